"""`ridelake.publish_postgres` over TLS, against a private PostgreSQL server that accepts only TLS
(`pg_tls.tls_postgres`), with libpq's `sslmode` / `sslrootcert` meanings:

- `require` and the default (`prefer`) publish over TLS without checking the certificate;
- `verify-ca` checks the chain against `sslrootcert`, `verify-full` also the host name;
- a wrong CA, a host name not in the certificate, a missing root certificate and a plaintext
  connection are refused, and no error message contains the DSN or its password.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import psycopg
import pytest
import ridelake

from pg_tls import TlsPostgres, tls_postgres
from test_pipeline import GOLD, GOLD_KEYS, gold_table, run_job

PASSWORD = "PLANTED-PW-123"


@pytest.fixture(scope="session")
def tls_pg() -> Iterator[TlsPostgres]:
    with tls_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("publish-tls") / "lake"
    run_job(str(path), "--records", "3000", "--seed", "21")
    return str(path)


@pytest.fixture
def schema() -> str:
    return f"gold_{uuid.uuid4().hex[:8]}"


def assert_published(dsn: str, lake: str, schema: str) -> None:
    """Every gold table equals its published copy, read back over TLS."""
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() == (True,)
        for table in GOLD:
            gold = gold_table(lake, table).with_columns(pl.col(pl.Datetime).dt.convert_time_zone("UTC"))
            cur = conn.execute(f'SELECT * FROM "{schema}"."{table}"')
            frame = pl.DataFrame(cur.fetchall(), schema=[d.name for d in cur.description], orient="row",
                                 infer_schema_length=None)
            published = frame.with_columns(pl.col(pl.Datetime).dt.convert_time_zone("UTC"))
            published = published.sort(GOLD_KEYS[table]).select(gold.columns).cast(dict(gold.schema))
            assert published.equals(gold), f"{schema}.{table} differs from gold/{table}"


def error_text(error: BaseException) -> str:
    """The message, repr and arguments of an exception and of every exception it chains to."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), *map(str, current.args), *getattr(current, "__notes__", [])]
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@pytest.mark.parametrize("sslmode", ["require", None], ids=["require", "default-prefer"])
def test_publish_without_certificate_check(tls_pg: TlsPostgres, lake: str, schema: str, sslmode: str | None) -> None:
    """`require` and no sslmode at all (libpq's `prefer`) publish over TLS to a TLS-only server, and the
    published tables equal gold."""
    dsn = tls_pg.dsn(sslmode)
    published = ridelake.publish_postgres(lake, dsn, schema)
    assert {t["table"]: t["mode"] for t in published} == {t: "full" for t in GOLD}
    assert_published(dsn, lake, schema)


@pytest.mark.parametrize(("sslmode", "host"), [("verify-full", "localhost"), ("verify-ca", "127.0.0.1")])
def test_publish_verifying_the_server(tls_pg: TlsPostgres, lake: str, schema: str, sslmode: str, host: str) -> None:
    """`verify-full` to the certificate's host name and `verify-ca` to an address the certificate does not
    name (only the chain is checked) both publish when the server certificate chains to `sslrootcert`."""
    dsn = tls_pg.dsn(sslmode, host=host, sslrootcert=tls_pg.ca)
    published = ridelake.publish_postgres(lake, dsn, schema)
    assert {t["table"] for t in published} == set(GOLD)
    assert_published(dsn, lake, schema)


REFUSED: dict[str, tuple[str, str, str | None, str]] = {
    "host-name-mismatch": ("verify-full", "127.0.0.1", "ca", r"certificate|host ?name|NotValidForName"),
    "wrong-ca": ("verify-full", "localhost", "wrong_ca", r"certif|issuer"),
    "no-root-certificate": ("verify-full", "localhost", None, r"root ?cert|root\.crt|sslrootcert"),
    "plaintext": ("disable", "127.0.0.1", None, r"pg_hba\.conf rejects connection .*no encryption"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_connections_name_the_problem_not_the_dsn(
    tls_pg: TlsPostgres, lake: str, schema: str, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A host name missing from the certificate (with `verify-full`; the same CA passes `verify-ca`
    above), an unrelated CA, `verify-full` without a root certificate (and no `~/.postgresql/root.crt`)
    and a plaintext connection to the TLS-only server all fail with an error naming that problem, and
    the error holds neither the DSN nor its password."""
    sslmode, host, rootcert_name, expected = REFUSED[case]
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("PGSSLROOTCERT", "PGSSLMODE", "PGPASSWORD", "RIDELAKE_POSTGRES_DSN"):
        monkeypatch.delenv(name, raising=False)
    rootcert = getattr(tls_pg, rootcert_name) if rootcert_name else None
    dsn = tls_pg.dsn(sslmode, host=host, sslrootcert=rootcert, password=PASSWORD)
    with pytest.raises(ridelake.RidelakeError) as raised:
        ridelake.publish_postgres(lake, dsn, schema)
    text = error_text(raised.value)
    assert re.search(expected, text, re.IGNORECASE), f"{case}: unexpected error {text!r}"
    assert PASSWORD not in text, f"{case}: the error holds the password"
    assert dsn not in text, f"{case}: the error holds the DSN"
