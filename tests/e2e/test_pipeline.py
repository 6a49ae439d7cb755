"""The main job (scripts/run_pipeline.py, what scripts/demo.sh runs) and the Mage project.

- The job lands generated CDC in bronze, builds silver and gold, prints the summary and writes
  the HTML report; the report's figures equal the gold tables; a second run continues the same
  history (bronze holds exactly the records of both runs) and silver/gold follow incrementally.
- `mage run mage_project ride_lakehouse --test` (mage-ai in its own venv) builds, from the same
  bronze, the same gold as the main job, on a local folder and on Ceph RGW; its exporter's
  Parquet files equal the gold tables and carry their versions.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from conftest import BIN_DIR, REPO, VENVS, read_delta

GOLD = ["daily_city_kpis", "driver_daily", "customer_daily", "driver_stats", "customer_totals", "monthly_distance"]
GOLD_KEYS = {
    "daily_city_kpis": ["year", "month", "day", "city"],
    "driver_daily": ["year", "month", "day", "driver_id"],
    "customer_daily": ["year", "month", "day", "customer_id"],
    "driver_stats": ["driver_id"],
    "customer_totals": ["customer_id"],
    "monthly_distance": ["year", "month"],
}


def run_job(lake: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, str(REPO / "scripts/run_pipeline.py"), "--lake", lake, *args],
                          capture_output=True, text=True, timeout=900, env={**os.environ, **(env or {})}, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def gold_table(lake: str, table: str, options: dict | None = None) -> pl.DataFrame:
    return read_delta(f"{lake}/gold/{table}", options).sort(GOLD_KEYS[table])


def report_data(path: Path) -> dict:
    html = path.read_text()
    match = re.search(r'<script type="application/json" id="ridelake-summary">(.*?)</script>', html, re.S)
    assert match, "the report embeds its data"
    return json.loads(match.group(1).replace("<\\/", "</"))


def test_main_job_report_and_incremental_second_run(tmp_path):
    lake = tmp_path / "lake"
    first = run_job(str(lake), "--records", "30000", "--seed", "5")
    assert "top drivers" in first.stdout and "pending rides" in first.stdout
    assert "bronze: 30,000 / 30,000 records committed" in first.stderr, first.stderr[-2000:]
    report = lake / "report.html"
    data = report_data(report)

    # The report's figures are the gold tables'.
    stats = gold_table(str(lake), "driver_stats")
    best = stats.sort(["completed", "driver_id"], descending=[True, False]).head(10)
    assert [d["driver_id"] for d in data["top_drivers"]] == best["driver_id"].to_list()
    assert [d["completed"] for d in data["top_drivers"]] == best["completed"].to_list()
    monthly = gold_table(str(lake), "monthly_distance")
    assert [m["rides"] for m in data["months"]] == monthly["rides"].to_list()
    assert [m["distance_km"] for m in data["months"]] == pytest.approx(monthly["distance_km"].to_list())
    kpis = gold_table(str(lake), "daily_city_kpis").group_by("year", "month", "day").agg(
        pl.col("requested").sum(), pl.col("cancelled").sum()).sort("year", "month", "day")
    assert [d["requested"] for d in data["days"]] == kpis["requested"].to_list()
    assert [d["cancelled"] for d in data["days"]] == kpis["cancelled"].to_list()
    rows = {(t["layer"], t["table"]): t["rows"] for t in data["tables"]}
    assert rows["silver", "rides"] == read_delta(str(lake / "silver/rides")).height
    assert rows["silver", "rides_pending"] == data["pending_rides"]
    html = report.read_text()
    for d in data["top_drivers"][:3]:
        assert f"#{d['driver_id']}" in html, "each top driver is drawn"
    assert "<svg" in html and "<script src" not in html and "<link" not in html, "self-contained"

    # A second run continues the history: bronze holds exactly the records of both runs.
    rides_before = read_delta(str(lake / "silver/rides")).height
    second = run_job(str(lake), "--records", "20000")
    assert "continuing lake" in second.stderr
    bronze = sum(read_delta(str(lake / f"bronze/ridehail/{s}")).height for s in ("users", "rides"))
    assert bronze == 50_000
    silver = read_delta(str(lake / "silver/rides"))
    assert silver["id"].n_unique() == silver.height
    assert silver.height > rides_before, "new rides reached silver"
    assert "this run: 20,000 bronze rows read" in second.stdout
    assert report_data(report)["months"] != data["months"] or report_data(report)["days"] != data["days"]


def mage(project_env: dict, tmp_path: Path, *runtime: str) -> subprocess.CompletedProcess:
    venv = VENVS / "mage"
    if not (venv / "bin/mage").exists():
        pytest.fail("mage-ai is not installed: run scripts/setup-test-env.sh")
    env = {**os.environ, "MAGE_DATA_DIR": str(tmp_path / "mage_data"), **project_env}
    env.pop("VIRTUAL_ENV", None)
    cmd = [str(venv / "bin/mage"), "run", str(REPO / "mage_project"), "ride_lakehouse", "--test"]
    if runtime:
        cmd += ["--runtime-vars", runtime[0]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert proc.returncode == 0 and "Pipeline run completed" in proc.stdout + proc.stderr, (proc.stdout + proc.stderr)[-6000:]
    return proc


def assert_same_gold(a: str, b: str, options: dict | None = None) -> None:
    """Same rows and values; sums of floats may differ in the last bits (parallel summation order)."""
    from polars.testing import assert_frame_equal

    for table in GOLD:
        left, right = gold_table(a, table, options), gold_table(b, table, options)
        assert_frame_equal(left, right, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)


def check_exports(lake: str, export_dir: Path, options: dict | None = None) -> None:
    from deltalake import DeltaTable

    for table in GOLD:
        path = export_dir / f"{table}.parquet"
        exported = pl.read_parquet(path).sort(GOLD_KEYS[table])
        assert exported.equals(gold_table(lake, table, options)), table
        version = pq.read_metadata(path).metadata[b"ridelake.delta_version"]
        assert int(version) == DeltaTable(f"{lake}/gold/{table}", storage_options=options).version()


PG_DSN = os.environ.get("RIDELAKE_TEST_POSTGRES_DSN", "host=127.0.0.1 user=postgres dbname=test")


def check_postgres(lake: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_DSN) as conn:
        for table in ("driver_stats", "daily_city_kpis"):
            rows, = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
            assert rows == gold_table(lake, table).height, table
        completed, = conn.execute(f'SELECT sum(completed) FROM "{schema}".driver_stats').fetchone()
        assert completed == gold_table(lake, "driver_stats")["completed"].sum()


def drop_schema(schema: str) -> None:
    import psycopg

    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_mage_pipeline_builds_the_same_gold_on_a_local_folder(tmp_path):
    main_lake, mage_lake = str(tmp_path / "main"), str(tmp_path / "mage")
    run_job(main_lake, "--records", "25000", "--seed", "9")
    run_job(mage_lake, "--records", "25000", "--seed", "9", "--only-bronze")
    exports = tmp_path / "exports"
    schema = f"mage_{tmp_path.name[-12:].replace('-', '_')}".lower()
    env = {"RIDELAKE_LAKE": mage_lake, "RIDELAKE_EXPORT_DIR": str(exports),
           "RIDELAKE_POSTGRES_DSN": PG_DSN, "RIDELAKE_POSTGRES_SCHEMA": schema}
    try:
        mage(env, tmp_path)
        assert_same_gold(main_lake, mage_lake)
        check_exports(mage_lake, exports)
        check_postgres(mage_lake, schema)
        assert pl.read_parquet(f"{mage_lake}/ml/driver_features.parquet").height == gold_table(mage_lake, "driver_stats").height
    except BaseException:
        drop_schema(schema)
        raise
    # The next sync reaches both; the scheduled pipeline catches up incrementally.
    run_job(main_lake, "--records", "10000")
    run_job(mage_lake, "--records", "10000", "--only-bronze")
    try:
        mage(env, tmp_path)
        assert_same_gold(main_lake, mage_lake)
        check_exports(mage_lake, exports)
        check_postgres(mage_lake, schema)
    finally:
        drop_schema(schema)


def test_mage_pipeline_on_ceph_rgw(tmp_path, rgw_server):
    bucket = rgw_server.new_bucket()
    creds = {"AWS_ACCESS_KEY_ID": rgw_server.key, "AWS_SECRET_ACCESS_KEY": rgw_server.secret, "AWS_REGION": "us-east-1",
             "AWS_ENDPOINT_URL": rgw_server.endpoint}
    main_lake, mage_lake = f"s3://{bucket}/main", f"s3://{bucket}/mage"
    run_job(main_lake, "--records", "15000", "--seed", "3", "--report", str(tmp_path / "report.html"), env=creds)
    run_job(mage_lake, "--records", "15000", "--seed", "3", "--only-bronze", env=creds)
    exports = tmp_path / "exports"
    observe = {"RIDELAKE_METRICS_FILE": str(tmp_path / "metrics/{job}.prom"),
               "RIDELAKE_OPENLINEAGE_FILE": str(tmp_path / "lineage.jsonl")}
    # The lake comes from the runtime variables here, the credentials from the environment.
    mage({**creds, **observe, "RIDELAKE_EXPORT_DIR": str(exports)}, tmp_path, json.dumps({"lake": mage_lake}))
    options = rgw_server.storage_options()
    assert_same_gold(main_lake, mage_lake, options)
    check_exports(mage_lake, exports, options)
    assert report_data(tmp_path / "report.html")["top_drivers"], "the S3 run wrote its report locally"
    # The blocks' builds sent their metrics (one file per job) and lineage with S3 dataset names.
    for job in ("ridelake_silver", "ridelake_gold"):
        assert "ridelake_run_success 1" in (tmp_path / f"metrics/{job}.prom").read_text(), job
    events = [json.loads(line) for line in (tmp_path / "lineage.jsonl").read_text().splitlines()]
    silver = next(e for e in events if e["job"]["name"] == "silver.build" and e["eventType"] == "COMPLETE")
    outputs = {(d["namespace"], d["name"]) for d in silver["outputs"]}
    assert (f"s3://{bucket}", "mage/silver/rides") in outputs, outputs
