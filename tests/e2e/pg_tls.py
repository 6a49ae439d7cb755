"""A private PostgreSQL server that accepts only TLS, for testing `ridelake.publish_postgres` over TLS.

`tls_postgres()` makes a throwaway CA and a server certificate it signs (subjectAltName
`DNS:localhost` only, so `host=127.0.0.1` fails a `verify-full` host-name check), a second,
unrelated CA, then runs `initdb` and `postgres` (the highest version under
`/usr/lib/postgresql/*/bin`) in a temp dir on a free loopback port with `ssl=on` and a
`pg_hba.conf` that accepts TLS connections only (`hostssl ... trust`, `hostnossl ... reject`).
PostgreSQL refuses to run as root: as root, the server runs as the `postgres` OS user, which owns
the temp dir (mode 0700) and the server key (mode 0600). The server is stopped
(`pg_ctl stop -m fast`) and the temp dir removed when the context ends, even on failure.
"""
from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

OPENSSL = "/usr/bin/openssl"
SERVER_USER = "postgres"
DATABASE = "ridelake_tls"

OPENSSL_CONFIG = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
"""


def postgres_bin() -> Path:
    """The bin dir of the highest PostgreSQL version installed under /usr/lib/postgresql."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists() and p.parent.name.isdigit()]
    if not found:
        raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql/*/bin")
    return max(found, key=lambda p: int(p.parent.name))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def quote(value: str) -> str:
    """A libpq key=value value, quoted when it needs to be."""
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class TlsPostgres:
    """A running TLS-only server: where it listens and the certificates a client needs."""

    port: int
    ca: Path
    wrong_ca: Path
    dbname: str
    user: str
    log: Path

    def dsn(self, sslmode: str | None = None, *, host: str = "127.0.0.1", sslrootcert: str | Path | None = None,
            **extra: str) -> str:
        """A libpq key=value DSN; `sslmode`/`sslrootcert` are left out when None."""
        params: dict[str, str] = {"host": host, "port": str(self.port), "user": self.user, "dbname": self.dbname}
        if sslmode is not None:
            params["sslmode"] = sslmode
        if sslrootcert is not None:
            params["sslrootcert"] = str(sslrootcert)
        params.update(extra)
        return " ".join(f"{key}={quote(value)}" for key, value in params.items())


def _run(args: list[str | Path], *, as_server: bool = False, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [str(a) for a in args]
    if as_server and os.geteuid() == 0:
        command = ["runuser", "-u", SERVER_USER, "--", *command]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return proc


def _openssl(*args: str | Path, cwd: Path) -> None:
    _run([OPENSSL, *args], cwd=cwd)


def make_certificates(directory: Path) -> dict[str, Path]:
    """CA, server key and certificate (signed by the CA, SAN DNS:localhost), and an unrelated CA."""
    config = directory / "openssl.cnf"
    config.write_text(OPENSSL_CONFIG)
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for name, subject in (("ca", "/CN=ridelake test CA"), ("wrong-ca", "/CN=ridelake unrelated CA")):
        _openssl("req", "-x509", "-new", *ec, "-sha256", "-days", "7", "-subj", subject, "-config", config,
                 "-extensions", "ca", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)
    _openssl("req", "-new", *ec, "-subj", "/CN=localhost", "-config", config,
             "-keyout", "server.key", "-out", "server.csr", cwd=directory)
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial",
             str(int.from_bytes(os.urandom(8), "big")), "-sha256", "-days", "7", "-extfile", config,
             "-extensions", "server", "-out", "server.crt", cwd=directory)
    (directory / "server.key").chmod(0o600)
    return {"ca": directory / "ca.pem", "wrong_ca": directory / "wrong-ca.pem",
            "cert": directory / "server.crt", "key": directory / "server.key"}


def _chown_to_server(*paths: Path) -> None:
    if os.geteuid() != 0:
        return
    account = pwd.getpwnam(SERVER_USER)
    for path in paths:
        os.chown(path, account.pw_uid, account.pw_gid)


def _configure(data: Path, socket_dir: Path, cert: Path, key: Path) -> None:
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "unix_socket_directories": f"'{socket_dir}'",
        "ssl": "on",
        "ssl_cert_file": f"'{cert}'",
        "ssl_key_file": f"'{key}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "50",
        "shared_buffers": "'32MB'",
    }
    with open(data / "postgresql.conf", "a") as conf:
        conf.write("\n" + "".join(f"{k} = {v}\n" for k, v in settings.items()))
    (data / "pg_hba.conf").write_text("hostssl all all 127.0.0.1/32 trust\nhostnossl all all 0.0.0.0/0 reject\n")


def _wait_ready(bin_dir: Path, port: int, log: Path, deadline: float) -> None:
    while True:
        proc = subprocess.run([str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "2"])
        if proc.returncode == 0:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL on port {port} is not ready:\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.1)


@contextmanager
def tls_postgres(dbname: str = DATABASE, start_timeout: float = 60) -> Iterator[TlsPostgres]:
    """Runs a private TLS-only PostgreSQL server for the duration of the context."""
    bin_dir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="ridelake-pgtls-"))
    data, certs, sockets, log = root / "data", root / "certs", root / "sockets", root / "postgres.log"
    try:
        certs.mkdir()
        sockets.mkdir()
        files = make_certificates(certs)
        _chown_to_server(root, certs, sockets, files["key"], files["cert"])
        _run([bin_dir / "initdb", "-D", data, "-U", SERVER_USER, "--auth=trust", "--encoding=UTF8", "--locale=C",
              "--no-sync"], as_server=True, cwd=root, timeout=120)
        _configure(data, sockets, files["cert"], files["key"])
        for attempt in range(5):
            port = free_port()
            try:
                _run([bin_dir / "pg_ctl", "-D", data, "-l", log, "-w", "-t", str(int(start_timeout)),
                      "-o", f"-p {port}", "start"], as_server=True, cwd=root, timeout=start_timeout + 10)
            except RuntimeError:
                if attempt == 4 or "could not bind" not in log.read_text(errors="replace"):
                    raise RuntimeError(f"PostgreSQL did not start:\n{log.read_text(errors='replace')[-4000:]}") from None
                continue
            break
        _wait_ready(bin_dir, port, log, time.monotonic() + start_timeout)
        _run([bin_dir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", SERVER_USER, dbname],
             env={"PGSSLMODE": "require", "PGCONNECT_TIMEOUT": "10"})
        yield TlsPostgres(port=port, ca=files["ca"], wrong_ca=files["wrong_ca"], dbname=dbname, user=SERVER_USER, log=log)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run((["runuser", "-u", SERVER_USER, "--"] if os.geteuid() == 0 else [])
                           + [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"],
                           capture_output=True, cwd=root, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
