"""`ridelake.maintain` (compaction, log cleanup, checkpoints, vacuum) changes nothing anybody reads.

Bronze is written by the real destination binary from the generator's history, cut into several
syncs that commit at every STATE, so that every sync adds many small bronze files. Silver and gold
are built after each sync. Every table is read by two independent readers, Python `deltalake` and
DuckDB's delta extension (each compared with itself: their types differ), and both readers must
agree on the rows. Proven here:

1. On a local folder, maintenance with no retention at all (files and log entries) merges bronze's
   small files, deletes every replaced file and keeps every log entry its floor names, and both
   readers return exactly what they returned before, for every bronze, silver and gold table. The
   next sync's silver run stays incremental (no rebuild, it reads only the new rows), and the
   lake then equals a lake built from the same syncs and never maintained, and a rebuild of silver
   and gold from a copy of its (compacted) bronze, every column included.
2. The default retention (168 h) keeps time travel working: a version of silver rides from before
   maintenance still reads the same; with no retention its replaced files are deleted.
3. Readers running in another thread while maintenance compacts and vacuums the tables they read
   always get the same rows.
4. `python -m ridelake maintain` prints the report as JSON; `--no-compact --no-vacuum` touches no
   data file; afterwards silver has nothing new to read.
5. The same on Ceph RGW (a real S3 implementation).
6. The Mage pipeline `lake_maintenance`, after `ride_lakehouse` built silver and gold, succeeds,
   passes its runtime variables on and changes no table.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import duckdb_ext
import polars as pl
import pytest
import ridelake
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from conftest import REPO, VENVS, S3Server, generate, run_dest, write_json

NS = "ridehail"
STREAMS = ("users", "rides")
RIDES_BRONZE = f"bronze/{NS}/rides"
SILVER_KEYS = {"users": ["id"], "rides": ["id"], "rides_pending": ["id"], "rides_deleted": ["id"],
               "quarantine": ["table", "_airbyte_raw_id"]}
GOLD_KEYS = {"daily_city_kpis": ["year", "month", "day", "city"], "driver_daily": ["year", "month", "day", "driver_id"],
             "customer_daily": ["year", "month", "day", "customer_id"], "driver_stats": ["driver_id"],
             "customer_totals": ["customer_id"], "monthly_distance": ["year", "month"]}
# Every table a reader may read (named as maintain's report names them: the path under the lake),
# with its key: each table is read sorted by it.
KEYS = {**{f"bronze/{NS}/{s}": ["_airbyte_raw_id"] for s in STREAMS},
        **{f"silver/{t}": k for t, k in SILVER_KEYS.items()}, **{f"gold/{t}": k for t, k in GOLD_KEYS.items()}}
READERS = ("deltalake", "duckdb")
# DuckDB reads bronze as a fingerprint (bronze's meta columns are nested); it scans the column.
BRONZE_FINGERPRINT = "count(*) as rows, count(distinct _airbyte_raw_id) as ids, bit_xor(hash(_airbyte_raw_id)) as digest"
# What differs between two lakes built from the same syncs: the destination draws a fresh
# `_airbyte_raw_id` per row, and maintenance commits to bronze (compaction, vacuum), so the bronze
# versions of the rows synced after it are higher in the maintained lake. Their order is the same.
LAKE_SPECIFIC = ["_airbyte_raw_id", "bronze_version", "_cdc_bronze_version"]

# Small sizes: a STATE every 60 records, so each sync commits a dozen small files per stream.
RECORDS, STATE_EVERY = "3000", "60"


# ---- bronze: the generator's history, in syncs, through the real destination -----------------------

def history(tmp: Path, syncs: int, seed: int = 31) -> tuple[list[bytes], Path]:
    """The generator's history cut into `syncs` syncs, each ending at a STATE; and the catalog.
    More bad rows than the default, so that silver's quarantine grows (by appends) at every run."""
    messages, catalog = generate(tmp, "--records", RECORDS, "--state-every", STATE_EVERY, "--seed", str(seed),
                                 "--bad-null-rate", "0.03", name="history")
    lines = messages.read_bytes().splitlines(keepends=True)
    after_state = [i + 1 for i, line in enumerate(lines) if b'"type":"STATE"' in line]
    assert len(after_state) >= 2 * syncs, f"{len(after_state)} STATE messages cannot make {syncs} syncs of several commits"
    ends = [after_state[len(after_state) * (k + 1) // syncs - 1] for k in range(syncs)]
    ends[-1] = len(lines)
    return [b"".join(lines[start:end]) for start, end in zip([0, *ends[:-1]], ends)], catalog


def bronze_config(tmp: Path, lake: Path) -> Path:
    """The destination's config for `lake`: a commit at every STATE, hence many small files."""
    storage = {"storage_type": "Local", "local_path": str(lake / "bronze")}
    return write_json(tmp / f"config-{lake.name}.json", {"storage": storage, "flush_interval_seconds": 0})


def land(config: Path, catalog: Path, sync: bytes) -> None:
    run = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=sync)
    assert run.returncode == 0, run.stderr[-2000:]
    assert len(run.states) == sync.count(b'"type":"STATE"'), "every STATE is echoed: everything is committed"


def built_lake(tmp: Path, syncs: int) -> Path:
    """A local lake: the history landed in `syncs` syncs, silver and gold built after each."""
    parts, catalog = history(tmp, syncs)
    lake = tmp / "lake"
    config = bronze_config(tmp, lake)
    for sync in parts:
        land(config, catalog, sync)
        build(str(lake))
    return lake


def build(lake: str, options: dict | None = None) -> dict:
    """Silver, then gold; returns silver's report."""
    silver = ridelake.build_silver(lake, storage_options=options)
    ridelake.build_gold(lake, storage_options=options)
    return silver


# ---- reading -----------------------------------------------------------------------------------------

@contextlib.contextmanager
def duck(s3: S3Server | None = None):
    """A DuckDB connection with the delta extension (and the S3 server's credentials)."""
    with duckdb_ext.init(duckdb.connect()) as con:
        if s3 is not None:
            host = s3.endpoint.removeprefix("http://")
            con.execute(f"""CREATE SECRET s (TYPE s3, KEY_ID '{s3.key}', SECRET '{s3.secret}', REGION 'us-east-1',
                            ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)""")
        yield con


def read(reader: str, lake: str, table: str, *, con=None, options: dict | None = None) -> pl.DataFrame:
    """The latest version of `table` as `reader` returns it, sorted by its key (a fingerprint for
    bronze through DuckDB). Opens the table anew at every call."""
    uri = f"{lake}/{table}"
    if reader == "duckdb":
        if table.startswith("bronze/"):
            return con.execute(f"select {BRONZE_FINGERPRINT} from delta_scan('{uri}')").pl()
        frame = con.execute(f"select * from delta_scan('{uri}')").pl()
    else:
        frame = pl.from_arrow(DeltaTable(uri, storage_options=options).to_pyarrow_table())
    return frame.sort(KEYS[table], nulls_last=True)


def read_version(uri: str, version: int | None = None) -> pl.DataFrame:
    return pl.from_arrow(DeltaTable(uri, version=version).to_pyarrow_table()).sort("id")


def present(lake: str, options: dict | None = None) -> list[str]:
    return [t for t in KEYS if DeltaTable.is_deltatable(f"{lake}/{t}", storage_options=options)]


def snapshot(lake: str, con, options: dict | None = None) -> dict[tuple[str, str], pl.DataFrame]:
    """Every table of the lake, by both readers."""
    tables = present(lake, options)
    assert {RIDES_BRONZE, "silver/rides", "gold/driver_stats"} <= set(tables), f"the lake lacks tables: it has {tables}"
    snap = {(reader, t): read(reader, lake, t, con=con, options=options) for t in tables for reader in READERS}
    assert_readers_agree(snap)
    return snap


def assert_readers_agree(snap: dict[tuple[str, str], pl.DataFrame]) -> None:
    """Both readers see the same rows (by key; their column types differ, e.g. time zones)."""
    for (reader, table), frame in snap.items():
        if reader != "duckdb":
            continue
        other = snap["deltalake", table]
        if table.startswith("bronze/"):
            got, want = (frame["rows"][0], frame["ids"][0]), (other.height, other["_airbyte_raw_id"].n_unique())
        else:
            got, want = frame.select(KEYS[table]).rows(), other.select(KEYS[table]).rows()
        assert got == want, f"{table}: DuckDB and deltalake disagree ({str(got)[:300]} vs {str(want)[:300]})"


def difference(a: pl.DataFrame, b: pl.DataFrame) -> str:
    if a.schema != b.schema:
        return f"schema {dict(a.schema)} became {dict(b.schema)}"
    if a.height != b.height:
        return f"{a.height} rows became {b.height}"
    for i, (x, y) in enumerate(zip(a.iter_rows(), b.iter_rows())):
        if x != y:
            return f"row {i}: {x} became {y}"
    return "same values, different null or NaN placement"


def assert_unchanged(before: dict, after: dict, when: str) -> None:
    assert after.keys() == before.keys(), f"{when}: the tables {sorted(before)} became {sorted(after)}"
    changed = {name: difference(before[name], after[name]) for name in before if not after[name].equals(before[name])}
    assert not changed, f"{when}, readers get other rows:\n" + "\n".join(f"{r} {t}: {d}" for (r, t), d in changed.items())


def by_table(report: dict) -> dict[str, dict]:
    return {t["table"]: t for t in report["tables"]}


def data_files_on_disk(lake: Path, table: str) -> int:
    return sum(1 for p in (lake / table).rglob("*.parquet") if "_delta_log" not in p.parts)


def check_report(report: dict, tables: list[str]) -> None:
    """Every table was visited; nothing grew; bronze rides' small files were merged."""
    visited = by_table(report)
    assert set(tables) | {"silver/_lease", "gold/_lease"} <= set(visited), f"not visited: {set(tables) - set(visited)}"
    grew = [t for t in report["tables"] if t["files_after"] > t["files_before"] or t["files_written"] > t["files_compacted"]]
    assert not grew, f"maintenance added files: {grew}"
    rides = visited[RIDES_BRONZE]
    assert rides["files_compacted"] > 0 and rides["files_after"] < rides["files_before"], f"bronze rides was not compacted: {rides}"


# ---- comparing two lakes --------------------------------------------------------------------------------

def comparable(frame: pl.DataFrame, table: str, drop: list[str]) -> pl.DataFrame:
    frame = frame.drop([c for c in drop if c in frame.columns])
    keys = [k for k in KEYS[table] if k in frame.columns]
    if keys != KEYS[table]:  # the quarantine's key is a raw id: sort by every plain column instead
        keys = [c for c, kind in frame.schema.items() if not kind.is_nested()]
    return frame.sort(keys, nulls_last=True)


def assert_same_lake(a: str, b: str, drop: list[str], what: str) -> None:
    """Every silver table equal, every gold table equal to 1e-9 (gold sums floats in parallel, so
    two runs may differ in the last bits)."""
    assert present(a) == present(b), f"{what}: tables {present(a)} vs {present(b)}"
    for table in present(a):
        if table.startswith("bronze/"):
            continue
        x, y = (comparable(read("deltalake", lake, table), table, drop) for lake in (a, b))
        if table.startswith("silver/"):
            assert x.equals(y), f"{what}: {table} differs: {difference(x, y)}"
        else:
            try:
                assert_frame_equal(x, y, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
            except AssertionError as e:
                raise AssertionError(f"{what}: {table} differs: {e}") from None


# ---- 1. a local lake -------------------------------------------------------------------------------------

def test_maintenance_changes_no_table_and_keeps_silver_incremental(tmp_path):
    syncs, catalog = history(tmp_path, 4)
    kept, plain = tmp_path / "maintained", tmp_path / "plain"  # the same syncs; plain is never maintained
    configs = {lake: bronze_config(tmp_path, lake) for lake in (kept, plain)}
    for sync in syncs[:-1]:
        for lake in (kept, plain):
            land(configs[lake], catalog, sync)
            build(str(lake))

    with duck() as con:
        before = snapshot(str(kept), con)
        report = ridelake.maintain(str(kept), retention_hours=0, log_retention_hours=0)
        assert_unchanged(before, snapshot(str(kept), con), "after maintenance with no retention")
    tables = present(str(kept))
    check_report(report, tables)
    assert sum(t["logs_removed"] for t in report["tables"]) > 0, "no log entry was removed with no log retention"
    for name, done in by_table(report).items():
        if name.endswith("/_lease"):  # releasing the leases commits to these after the report
            continue
        assert DeltaTable(str(kept / name)).version() == done["version"], f"{name}: the report's version"
        # Its floor: every version from it on is still in the log (a reader of ours needs them).
        if done["log_floor"] is not None:
            log = kept / name / "_delta_log"
            gone = [v for v in range(min(done["log_floor"], done["version"]), done["version"] + 1)
                    if not (log / f"{v:020d}.json").exists()]
            assert not gone, f"{name}: log cleanup removed versions {gone} at or above its floor {done['log_floor']}"
        # No retention: every file out of the table was deleted.
        assert data_files_on_disk(kept, name) == done["files_after"], f"{name}: replaced files left on disk: {done}"

    # The next sync: silver reads only the new rows, as in the lake never maintained.
    for lake in (kept, plain):
        land(configs[lake], catalog, syncs[-1])
    after, fresh = build(str(kept)), build(str(plain))
    assert after["rebuild"] is None, f"maintenance cost silver its increment: {after['rebuild']}"
    assert fresh["rebuild"] is None
    assert after["rows_read"] == fresh["rows_read"] > 0, "both lakes' silver read exactly the new sync"
    assert_same_lake(str(plain), str(kept), LAKE_SPECIFIC, "maintained vs never maintained")

    # A rebuild from a copy of the maintained bronze (compacted files, cleaned log) gives the same
    # tables, every column included: the compacted files kept each row's place in ingest order.
    rebuilt = tmp_path / "rebuilt"
    shutil.copytree(kept / "bronze", rebuilt / "bronze")
    build(str(rebuilt))
    assert_same_lake(str(kept), str(rebuilt), [], "maintained vs rebuilt from its bronze")


# ---- 2. time travel ----------------------------------------------------------------------------------------

def test_time_travel_survives_the_default_retention(tmp_path):
    syncs, catalog = history(tmp_path, 3)
    lake = tmp_path / "lake"
    uri = str(lake / "silver/rides")
    config = bronze_config(tmp_path, lake)
    land(config, catalog, syncs[0])
    build(str(lake))
    first = DeltaTable(uri).version()
    for sync in syncs[1:]:
        land(config, catalog, sync)
        build(str(lake))
    latest = DeltaTable(uri)
    old = {v: read_version(uri, v) for v in (first, latest.version())}
    replaced = set(DeltaTable(uri, version=first).file_uris()) - set(latest.file_uris())
    assert replaced, "precondition: later runs replaced some files of silver rides' first version"
    with duck() as con:
        before = snapshot(str(lake), con)

    # The default retention (168 h) and log retention (720 h): compaction, but nothing deleted.
    default = ridelake.maintain(str(lake))
    check_report(default, present(str(lake)))
    deleted = [t for t in default["tables"] if t["files_vacuumed"] or t["bytes_reclaimed"] or t["logs_removed"]]
    assert not deleted, f"the default retention deleted files or log entries made minutes ago: {deleted}"
    for version, frame in old.items():
        again = read_version(uri, version)
        assert again.equals(frame), f"silver/rides at version {version} after maintenance: {difference(frame, again)}"
    assert all(Path(f).exists() for f in replaced), "the default retention deleted files of an old version"

    # No retention: the files out of the table go, the current versions still read the same.
    eager = ridelake.maintain(str(lake), retention_hours=0)
    assert any(t["bytes_reclaimed"] > 0 for t in eager["tables"]), f"nothing reclaimed with no retention: {eager}"
    left = sorted(f for f in replaced if Path(f).exists())
    assert not left, f"files silver rides replaced are still on disk: {left[:5]}"
    with duck() as con:
        assert_unchanged(before, snapshot(str(lake), con), "after maintenance with no retention")


# ---- 3. readers during maintenance ---------------------------------------------------------------------------

CONCURRENT = [RIDES_BRONZE, "silver/rides", "silver/quarantine", "gold/driver_stats"]


@dataclass
class Read:
    reader: str
    table: str
    started: float
    ended: float
    retried: bool
    error: str | None  # the second attempt's error too
    same: bool


def keep_reading(lake: str, expected: dict, stop: threading.Event, first_round: threading.Event, reads: list,
                 crashed: list) -> None:
    """Reads every table of `expected` with both readers, round after round, until `stop`.

    Maintenance runs with no retention, so a read that opened a snapshot just before a compaction
    commit may find its files (or log entries) deleted by the vacuum (or log cleanup) that follows:
    that is the documented cost of a zero retention, not an error. Such a read is retried once,
    opening the table anew; vacuum and log cleanup only come after the table's compaction commit, so
    the retry sees the compacted version, whose files stay. The retry must succeed."""
    try:
        with duck() as con:
            while not stop.is_set():
                for reader, table in expected:
                    started, retried, error, frame = time.monotonic(), False, None, None
                    for attempt in range(2):
                        try:
                            frame = read(reader, lake, table, con=con)
                            break
                        except Exception as e:  # any reader's error: see above
                            retried = True
                            if attempt:
                                error = f"{type(e).__name__}: {e}"
                    same = frame is not None and frame.equals(expected[reader, table])
                    reads.append(Read(reader, table, started, time.monotonic(), retried, error, same))
                first_round.set()
    except BaseException as e:
        crashed.append(repr(e))
    finally:
        first_round.set()


def test_readers_during_maintenance_always_get_the_same_rows(tmp_path):
    lake = built_lake(tmp_path, 3)
    assert len(DeltaTable(str(lake / "silver/quarantine")).file_uris()) > 1, "precondition: the quarantine grew by appends"
    with duck() as con:
        expected = {(reader, t): read(reader, str(lake), t, con=con) for t in CONCURRENT for reader in READERS}

    stop, first_round, reads, crashed = threading.Event(), threading.Event(), [], []
    thread = threading.Thread(target=keep_reading, args=(str(lake), expected, stop, first_round, reads, crashed), daemon=True)
    thread.start()
    assert first_round.wait(timeout=300), "the readers did not finish a first round"
    assert not crashed, crashed
    started = time.monotonic()
    try:
        report = ridelake.maintain(str(lake), retention_hours=0, log_retention_hours=0)
    finally:
        ended = time.monotonic()
        stop.set()
        thread.join(timeout=300)
    assert not thread.is_alive() and not crashed, crashed
    visited = by_table(report)
    raced = {t: visited[t]["files_compacted"] for t in (RIDES_BRONZE, "silver/quarantine")}
    assert all(raced.values()), f"the readers should race compactions of tables they read: {raced}"
    during = [r for r in reads if r.started < ended and r.ended > started]
    assert during, f"no read overlapped the maintenance run ({ended - started:.2f} s, {len(reads)} reads)"
    failed = [r for r in reads if r.error]
    assert not failed, f"reads failed twice during maintenance: {failed[:5]}"
    wrong = [r for r in reads if not r.same]
    assert not wrong, f"reads got other rows during maintenance: {wrong[:5]}"


# ---- 4. the command line ----------------------------------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ridelake", *args], capture_output=True, text=True, timeout=300)


def test_cli_maintain_prints_the_report(tmp_path):
    lake = built_lake(tmp_path, 2)
    with duck() as con:
        before = snapshot(str(lake), con)

    idle = cli("maintain", str(lake), "--no-compact", "--no-vacuum")
    assert idle.returncode == 0, idle.stderr
    touched = [t for t in json.loads(idle.stdout)["tables"]
               if t["files_compacted"] or t["files_vacuumed"] or t["files_after"] != t["files_before"]]
    assert not touched, f"--no-compact --no-vacuum changed data files: {touched}"

    out = cli("maintain", str(lake), "--retention-hours", "0")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert {"tables", "seconds"} <= set(report), report
    check_report(report, present(str(lake)))
    with duck() as con:
        assert_unchanged(before, snapshot(str(lake), con), "after `python -m ridelake maintain`")
    silver = ridelake.build_silver(str(lake))
    assert silver["rebuild"] is None and silver["rows_read"] == 0, f"maintenance gave silver work: {silver}"


# ---- 5. Ceph RGW ---------------------------------------------------------------------------------------------------

def test_maintenance_on_ceph_rgw(tmp_path, rgw_server):
    bucket = rgw_server.new_bucket()
    lake, options = f"s3://{bucket}/lake", rgw_server.storage_options()
    config = rgw_server.config(tmp_path, bucket, "lake/bronze", flush_interval_seconds=0)
    syncs, catalog = history(tmp_path, 3)
    for sync in syncs[:-1]:
        land(config, catalog, sync)
        build(lake, options)

    with duck(rgw_server) as con:
        before = snapshot(lake, con, options)
        report = ridelake.maintain(lake, storage_options=options, retention_hours=0, log_retention_hours=0)
        assert_unchanged(before, snapshot(lake, con, options), "on Ceph RGW, after maintenance with no retention")
        check_report(report, present(lake, options))
        pages = rgw_server.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"lake/{RIDES_BRONZE}/")
        keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
        stored = [k for k in keys if k.endswith(".parquet") and "/_delta_log/" not in k]
        assert len(stored) == by_table(report)[RIDES_BRONZE]["files_after"], "replaced bronze files left in the bucket"

        land(config, catalog, syncs[-1])
        silver = build(lake, options)
        assert silver["rebuild"] is None and silver["rows_read"] > 0, f"maintenance cost silver its increment: {silver}"
        snapshot(lake, con, options)  # both readers agree after the next run too


# ---- 6. the Mage pipeline ------------------------------------------------------------------------------------------

def mage(pipeline: str, project_env: dict, tmp_path: Path, runtime: dict | None = None) -> subprocess.CompletedProcess:
    venv = VENVS / "mage"
    if not (venv / "bin/mage").exists():
        pytest.fail("mage-ai is not installed: run scripts/setup-test-env.sh")
    env = {**os.environ, "MAGE_DATA_DIR": str(tmp_path / "mage_data"), **project_env}
    env.pop("VIRTUAL_ENV", None)
    cmd = [str(venv / "bin/mage"), "run", str(REPO / "mage_project"), pipeline, "--test"]
    if runtime:
        cmd += ["--runtime-vars", json.dumps(runtime)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and "Pipeline run completed" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-6000:]
    return proc


def gauge(text: str, name: str, table: str) -> float:
    match = re.search(rf'^{name}\{{table="{re.escape(table)}"\}} (\S+)$', text, re.M)
    assert match, f"{name} of {table} is not in the metrics:\n{text[-3000:]}"
    return float(match.group(1))


def test_mage_lake_maintenance_pipeline(tmp_path):
    syncs, catalog = history(tmp_path, 3)
    lake = tmp_path / "lake"
    config = bronze_config(tmp_path, lake)
    for sync in syncs:
        land(config, catalog, sync)
    metrics = tmp_path / "metrics"
    env = {"RIDELAKE_LAKE": str(lake), "RIDELAKE_EXPORT_DIR": str(tmp_path / "exports"),
           "RIDELAKE_METRICS_FILE": str(metrics / "{job}.prom")}
    mage("ride_lakehouse", env, tmp_path)
    with duck() as con:
        before = snapshot(str(lake), con)
    bronze_files = len(DeltaTable(str(lake / RIDES_BRONZE)).file_uris())

    mage("lake_maintenance", env, tmp_path, {"retention_hours": 0, "log_retention_hours": 0})
    with duck() as con:
        assert_unchanged(before, snapshot(str(lake), con), "after the lake_maintenance pipeline")
    text = (metrics / "ridelake_maintenance.prom").read_text()
    assert "ridelake_run_success 1" in text, text[-3000:]
    now = len(DeltaTable(str(lake / RIDES_BRONZE)).file_uris())
    assert gauge(text, "ridelake_table_files", RIDES_BRONZE) == now < bronze_files
    assert gauge(text, "ridelake_maintenance_files_compacted", RIDES_BRONZE) > 0
    # retention_hours=0 reached maintain: the replaced files are already gone (168 h would keep them).
    assert data_files_on_disk(lake, RIDES_BRONZE) == now
