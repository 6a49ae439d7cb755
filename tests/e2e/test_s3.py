"""The destination against real S3 servers: moto (fast emulator) and Ceph RGW (a real S3
implementation with atomic conditional PUT). Writes, reads back with two independent readers,
checks that `check` explains each misconfiguration, and that concurrent writers lose no commit."""
from __future__ import annotations

import json
import subprocess
import threading

import duckdb
import duckdb_ext
import pytest

from conftest import DEST, S3Server, count_records, generate, read_delta, run_dest, write_json


def test_write_and_read_back(s3: S3Server, tmp_path):
    bucket = s3.new_bucket()
    messages, catalog = generate(tmp_path, "--records", "20000", "--state-every", "5000")
    config = s3.config(tmp_path, bucket, "lake/bronze", target_file_size_mb=1, flush_interval_seconds=0)
    run = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=messages.read_bytes())
    assert run.returncode == 0, run.stderr
    counts = count_records(messages)
    assert sum(s["destinationStats"]["recordCount"] for s in run.states) == sum(counts.values())
    rides = read_delta(f"s3://{bucket}/lake/bronze/ridehail/rides", s3.storage_options())
    assert rides.height == counts["rides"]
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket, Prefix="lake/bronze/ridehail/rides/")["Contents"]]
    assert sum(k.endswith(".parquet") for k in keys) > 1, "1 MiB target size should roll several files"
    host = s3.endpoint.removeprefix("http://")
    with duckdb_ext.init(duckdb.connect()) as con:
        con.execute(f"""CREATE SECRET s (TYPE s3, KEY_ID '{s3.key}', SECRET '{s3.secret}', REGION 'us-east-1',
                        ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)""")
        n, = con.execute(f"select count(*) from delta_scan('s3://{bucket}/lake/bronze/ridehail/users')").fetchone()
    assert n == counts["users"]


def test_check_succeeds_and_cleans_up(s3: S3Server, tmp_path):
    bucket = s3.new_bucket()
    run = run_dest("check", "--config", str(s3.config(tmp_path, bucket)))
    [status] = run.of("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    assert s3.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def failing_check(tmp_path, storage: dict) -> str:
    run = run_dest("check", "--config", str(write_json(tmp_path / "bad.json", {"storage": storage})), timeout=180)
    assert run.returncode == 0
    [status] = run.of("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "FAILED"
    return status["connectionStatus"]["message"]


def test_check_explains_wrong_bucket(s3: S3Server, tmp_path):
    storage = {"storage_type": "S3", "s3_bucket_name": "no-such-bucket-here", "s3_bucket_path": "x",
               "s3_endpoint": s3.endpoint, "access_key_id": s3.key, "secret_access_key": s3.secret}
    assert "bucket does not exist" in failing_check(tmp_path, storage)


def test_check_explains_wrong_credentials(rgw_server: S3Server, tmp_path):
    # moto accepts any key, so credentials are checked against the real server only.
    bucket = rgw_server.new_bucket()
    storage = {"storage_type": "S3", "s3_bucket_name": bucket, "s3_bucket_path": "x",
               "s3_endpoint": rgw_server.endpoint, "access_key_id": "WRONG", "secret_access_key": "WRONG"}
    assert "refused the credentials" in failing_check(tmp_path, storage)


def test_check_explains_unreachable_endpoint(tmp_path):
    storage = {"storage_type": "S3", "s3_bucket_name": "b", "s3_bucket_path": "x",
               "s3_endpoint": "http://127.0.0.1:9", "access_key_id": "k", "secret_access_key": "s"}
    assert "could not reach the S3 endpoint" in failing_check(tmp_path, storage)


def test_write_to_wrong_bucket_is_a_config_error(s3: S3Server, tmp_path):
    messages, catalog = generate(tmp_path, "--records", "100")
    config = s3.config(tmp_path, "missing-bucket-xyz")
    run = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=messages.read_bytes(), timeout=300)
    assert run.returncode != 0
    assert run.error["failure_type"] == "config_error"
    assert "bucket does not exist" in run.error["message"]
    assert run.states == []


def test_two_writers_on_one_table_lose_no_commit(s3: S3Server, tmp_path):
    bucket = s3.new_bucket()
    config = s3.config(tmp_path, bucket, flush_interval_seconds=0)
    # Create the tables first, then race two syncs that commit at every state.
    inputs = [generate(tmp_path, "--records", "8000", "--state-every", "500", "--seed", str(seed), name=f"w{seed}")
              for seed in (1, 2)]
    first = run_dest("write", "--config", str(config), "--catalog", str(inputs[0][1]), stdin=b"")
    assert first.returncode == 0
    results = [None, None]

    def write(i):
        messages, catalog = inputs[i]
        results[i] = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=messages.read_bytes())

    threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for r in results:
        assert r.returncode == 0, r.stderr
    expected = sum(count_records(m)["rides"] for m, _ in inputs)
    rides = read_delta(f"s3://{bucket}/bronze/ridehail/rides", s3.storage_options())
    assert rides.height == expected
    from deltalake import DeltaTable
    history = DeltaTable(f"s3://{bucket}/bronze/ridehail/rides", storage_options=s3.storage_options()).history()
    writers = {h.get("ridelake.writer") for h in history if h.get("ridelake.writer")}
    assert len(writers) == 2
