"""Gold for Power BI and ML: `ridelake.publish_postgres` against the machine's PostgreSQL server,
and `ridelake.export_features` read back by pandas, Polars and DuckDB.

- every published table equals its gold Delta table (types, rows), with its key and comments;
- a second publish changes nothing; after new data only the changed days are replaced;
- two publishers (different gold versions) and a reader run concurrently: every read sees one
  whole publish, never a mix;
- a publish killed midway leaves the previous one intact;
- the feature files equal what gold says and carry the gold versions they come from.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import timezone

import polars as pl
import psycopg
import pytest
import ridelake
from deltalake import DeltaTable

from conftest import read_delta
from test_pipeline import GOLD, GOLD_KEYS, gold_table, run_job

DSN = os.environ.get("RIDELAKE_TEST_POSTGRES_DSN", "host=127.0.0.1 user=postgres dbname=test")


@pytest.fixture
def schema():
    name = f"gold_{uuid.uuid4().hex[:8]}"
    yield name
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture(scope="module")
def lakes(tmp_path_factory):
    """Lake A after one run, lake B = the same history one run further."""
    root = tmp_path_factory.mktemp("publish")
    a, b = root / "a", root / "b"
    run_job(str(a), "--records", "20000", "--seed", "21")
    shutil.copytree(a, b)
    run_job(str(b), "--records", "8000")
    return str(a), str(b)


def pg_table(schema: str, table: str) -> pl.DataFrame:
    with psycopg.connect(DSN) as conn:
        cur = conn.execute(f'SELECT * FROM "{schema}"."{table}"')
        names = [d.name for d in cur.description]
        rows = cur.fetchall()
    frame = pl.DataFrame(rows, schema=names, orient="row", infer_schema_length=None)
    return frame.with_columns(pl.col(pl.Datetime).dt.convert_time_zone("UTC"))


def assert_published(lake: str, schema: str) -> None:
    for table in GOLD:
        gold = gold_table(lake, table).with_columns(pl.col(pl.Datetime).dt.convert_time_zone("UTC"))
        published = pg_table(schema, table).sort(GOLD_KEYS[table]).select(gold.columns)
        published = published.cast(dict(gold.schema))
        assert published.equals(gold), f"{schema}.{table} differs from gold/{table}"


def test_publish_equals_gold_is_idempotent_and_incremental(lakes, schema, tmp_path):
    a, _ = lakes
    lake = str(tmp_path / "lake")
    shutil.copytree(a, lake)
    first = ridelake.publish_postgres(lake, DSN, schema)
    assert {t["table"]: t["mode"] for t in first} == {t: "full" for t in GOLD}
    assert_published(lake, schema)
    with psycopg.connect(DSN) as conn:
        key = conn.execute("""SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid
                              AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary
                              ORDER BY array_position(i.indkey, a.attnum)""", (f'"{schema}".driver_daily',)).fetchall()
        assert [k[0] for k in key] == ["year", "month", "day", "driver_id"]
        comment, = conn.execute("SELECT obj_description(%s::regclass)", (f'"{schema}".driver_stats',)).fetchone()
        version = DeltaTable(f"{lake}/gold/driver_stats").version()
        assert f"gold version {version}" in comment
        column, = conn.execute("SELECT col_description(%s::regclass, 1)", (f'"{schema}".monthly_distance',)).fetchone()
        assert column and "calendar" in column
        recorded = dict(conn.execute(f'SELECT table_name, gold_version FROM "{schema}".ridelake_published').fetchall())
        assert recorded["driver_stats"] == version

    assert all(t["mode"] == "unchanged" for t in ridelake.publish_postgres(lake, DSN, schema)), "a second publish is a no-op"

    run_job(lake, "--records", "6000")
    third = {t["table"]: t for t in ridelake.publish_postgres(lake, DSN, schema)}
    assert third["driver_daily"]["mode"] == "days"
    total_days = read_delta(f"{lake}/gold/daily_city_kpis").select("year", "month", "day").unique().height
    assert 0 < third["driver_daily"]["days"] < total_days, "only the changed days are replaced"
    assert third["driver_stats"]["mode"] == "full"
    assert_published(lake, schema)


def totals(lake: str) -> int:
    return int(read_delta(f"{lake}/gold/driver_stats")["completed"].sum())


def test_concurrent_publishes_and_a_reader_never_see_a_mix(lakes, schema):
    a, b = lakes
    expected = {a: totals(a), b: totals(b)}
    assert expected[a] != expected[b]
    ridelake.publish_postgres(a, DSN, schema)
    stop = threading.Event()
    seen: set[tuple[str, int]] = set()
    errors: list[str] = []

    def reader() -> None:
        with psycopg.connect(DSN, autocommit=True) as conn:
            while not stop.is_set():
                # One statement, one snapshot: the totals table, its partials and the bookkeeping.
                source, stats, daily = conn.execute(f"""SELECT
                    (SELECT source FROM "{schema}".ridelake_published WHERE table_name = 'driver_stats'),
                    (SELECT sum(completed) FROM "{schema}".driver_stats),
                    (SELECT sum(completed) FROM "{schema}".driver_daily)""").fetchone()
                lake = a if source.rstrip("/").endswith("/a/gold/driver_stats") else b
                if not (stats == daily == expected[lake]):
                    errors.append(f"mixed read: source {source}, driver_stats {stats}, driver_daily {daily}")
                seen.add((lake, int(stats)))

    def publisher(order: list[str]) -> None:
        try:
            for lake in order:
                ridelake.publish_postgres(lake, DSN, schema)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(f"publisher failed: {e}")

    threads = [threading.Thread(target=reader)]
    threads += [threading.Thread(target=publisher, args=([b, a] * 3,)), threading.Thread(target=publisher, args=([a, b] * 3,))]
    for t in threads:
        t.start()
    for t in threads[1:]:
        t.join(600)
    stop.set()
    threads[0].join(60)
    assert not errors, errors[:5]
    assert {lake for lake, _ in seen} == {a, b}, "the reader saw both versions"


def test_a_killed_publish_leaves_the_previous_one(lakes, schema):
    a, b = lakes
    ridelake.publish_postgres(a, DSN, schema)
    job = f"import ridelake; ridelake.publish_postgres({b!r}, {DSN!r}, {schema!r})"
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", job], check=True)  # how long a whole publish of B takes
    whole = time.monotonic() - started
    ridelake.publish_postgres(a, DSN, schema)
    rng = random.Random(5)
    killed = 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", job])
        time.sleep(rng.uniform(0.3, 0.9) * whole)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
        if proc.returncode == 0:  # it finished first: put A back for the next attempt
            ridelake.publish_postgres(a, DSN, schema)
            continue
        try:
            assert_published(a, schema)
        except AssertionError:
            # Killed after its commit but before it exited: B is published whole (never a mix).
            assert_published(b, schema)
            ridelake.publish_postgres(a, DSN, schema)
    assert killed > 0, "no publish was killed midway"


def test_ml_features_read_by_pandas_polars_duckdb(lakes, tmp_path):
    import duckdb
    import pandas as pd
    import pyarrow.parquet as pq

    lake = str(tmp_path / "lake")
    shutil.copytree(lakes[0], lake)
    files = {f["name"]: f for f in ridelake.export_features(lake)}
    drivers_path = f"{lake}/ml/driver_features.parquet"
    drivers = pl.read_parquet(drivers_path)
    stats = read_delta(f"{lake}/gold/driver_stats").sort("driver_id")
    assert drivers["driver_id"].to_list() == stats["driver_id"].to_list()
    assert drivers["completed"].to_list() == stats["completed"].to_list()
    assert files["driver_features"]["rows"] == stats.height
    daily = read_delta(f"{lake}/gold/driver_daily").group_by("driver_id").len().sort("driver_id")
    joined = drivers.join(daily, on="driver_id")
    assert (joined["active_days"] == joined["len"]).all()
    as_of = max(stats["last_ride_at"].max(), read_delta(f"{lake}/gold/customer_totals")["last_ride_at"].max())
    row = drivers.row(0, named=True)
    assert row["recency_days"] == pytest.approx((as_of - row["last_ride_at"]).total_seconds() / 86400)

    metadata = pq.read_metadata(drivers_path).metadata
    assert int(metadata[b"ridelake.gold.driver_stats.version"]) == DeltaTable(f"{lake}/gold/driver_stats").version()
    assert int(metadata[b"ridelake.as_of"]) == int(as_of.replace(tzinfo=timezone.utc).timestamp() * 1_000_000)
    described = pq.read_schema(drivers_path).field("recency_days").metadata
    assert b"description" in described

    customers = pd.read_parquet(f"{lake}/ml/customer_features.parquet")
    assert len(customers) == read_delta(f"{lake}/gold/customer_totals").height
    assert customers["cancellation_rate"].between(0, 1).all()
    n, completed = duckdb.sql(f"select count(*), sum(completed) from '{drivers_path}'").fetchone()
    assert (n, completed) == (stats.height, stats["completed"].sum())


def test_errors_never_show_the_connection_string(lakes):
    secret = "s3cret-do-not-log"
    with pytest.raises(ridelake.StorageError) as failure:
        ridelake.publish_postgres(lakes[0], f"host=127.0.0.1 port=9 user=bi password={secret} dbname=bi", "gold_x")
    assert "cannot connect to PostgreSQL" in str(failure.value)
    assert secret not in str(failure.value)
