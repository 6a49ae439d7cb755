"""ridelake (silver and gold) against a model oracle.

Random CDC histories go through the real destination binary into bronze (in several syncs, with
out-of-order arrival, duplicates, deletes, re-snapshots, late users and bad nulls), then through
ridelake's silver and gold. The result must equal a plain replay of the history into
dictionaries. Failing histories are kept in tests/e2e/hypothesis-db as regressions."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
import ridelake
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from conftest import REPO, generate, local_config, run_dest, write_json

BASE = datetime(2025, 3, 1, tzinfo=timezone.utc)
SUFFIX = 3 << 32
STATUSES = ["requested", "accepted", "in_progress", "completed", "cancelled"]
CATALOG = None


def ts(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return (BASE + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def catalog(tmp: Path) -> Path:
    messages, cat = generate(tmp, "--records", "1", name="catalog-only")
    return cat


user_event = st.tuples(st.just("user"), st.integers(1, 6), st.sampled_from(["customer", "customer", "driver", None]), st.integers(0, 3))
user_delete = st.tuples(st.just("user_delete"), st.integers(1, 6))
ride_event = st.tuples(
    st.just("ride"), st.integers(1, 10), st.one_of(st.none(), st.integers(1, 6)), st.one_of(st.none(), st.integers(1, 6)),
    st.sampled_from(STATUSES), st.one_of(st.none(), st.integers(0, 86400 * 3)), st.integers(1, 400),
)
ride_delete = st.tuples(st.just("ride_delete"), st.integers(1, 10))
duplicate = st.tuples(st.just("dup"), st.integers(0, 10_000))
resnapshot = st.tuples(st.just("resnapshot"))
events = st.lists(st.one_of(user_event, user_event, ride_event, ride_event, ride_event, user_delete, ride_delete, duplicate, resnapshot),
                  min_size=1, max_size=45)


def history_to_messages(history) -> list[dict]:
    """Turns abstract events into Airbyte RECORD messages in arrival order."""
    users: dict[int, dict] = {}
    rides: dict[int, dict] = {}
    out: list[dict] = []
    position = 1000

    def cdc(data: dict, pos: int, deleted: bool, snapshot: bool = False) -> dict:
        data = dict(data)
        data["_ab_cdc_updated_at"] = ts(pos)
        data["_ab_cdc_deleted_at"] = ts(pos) if deleted else None
        data["_ab_cdc_log_file"] = "mysql-bin.000003"
        data["_ab_cdc_log_pos"] = pos
        if not snapshot:
            data["_ab_cdc_cursor"] = SUFFIX | pos
        return data

    def emit(stream: str, data: dict) -> None:
        out.append({"type": "RECORD", "record": {"namespace": "ridehail", "stream": stream,
                                                 "emitted_at": int((BASE.timestamp() + len(out)) * 1000), "data": data}})

    for event in history:
        position += 10
        kind = event[0]
        if kind == "user":
            _, uid, utype, day = event
            created = users.get(uid, {}).get("created_at") or ts(day * 86400)
            row = {"id": uid, "type": utype, "name": f"u{uid}", "email": None, "phone": None, "city": "Paris",
                   "created_at": created, "updated_at": ts(position)}
            users[uid] = row
            emit("users", cdc(row, position, False))
        elif kind == "user_delete":
            row = users.pop(event[1], {"id": event[1]})
            emit("users", cdc(row, position, True))
        elif kind == "ride":
            _, rid, customer, driver, status, requested, meters = event
            row = {"id": rid, "customer_id": customer, "driver_id": driver, "status": status,
                   "requested_at": ts(requested), "accepted_at": None, "started_at": None, "completed_at": None,
                   "cancelled_at": None, "pickup_lat": 48.86, "pickup_lon": 2.35, "dropoff_lat": 48.87, "dropoff_lon": 2.36,
                   "distance_km": meters / 100, "duration_s": 600 if status == "completed" else None,
                   "fare_amount": meters / 10 if status == "completed" else None, "currency": "EUR", "payment_method": "card",
                   "customer_rating": None, "driver_rating": 5 if status == "completed" else None,
                   "created_at": ts(requested), "updated_at": ts(position)}
            rides[rid] = row
            emit("rides", cdc(row, position, False))
        elif kind == "ride_delete":
            row = rides.pop(event[1], {"id": event[1]})
            emit("rides", cdc(row, position, True))
        elif kind == "dup" and out:
            out.append(json.loads(json.dumps(out[event[1] % len(out)])))
        elif kind == "resnapshot":
            for uid in sorted(users):
                emit("users", cdc(users[uid], position, False, snapshot=True))
            for rid in sorted(rides):
                emit("rides", cdc(rides[rid], position, False, snapshot=True))
    return out


def order_key(data: dict):
    """The documented change order for these histories (one generation, one binlog file, so one
    epoch): position, then change time; the caller breaks ties by arrival (bronze ingest order)."""
    cursor = data.get("_ab_cdc_cursor")
    position = cursor if cursor is not None else (SUFFIX | data["_ab_cdc_log_pos"])
    updated = datetime.strptime(data["_ab_cdc_updated_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
    return (position, updated)


def oracle(messages: list[dict]) -> dict:
    """Replays the valid changes into dictionaries, by the documented rules."""
    latest: dict[str, dict[int, tuple]] = {"users": {}, "rides": {}}
    for n, message in enumerate(messages):
        record = message["record"]
        data, stream = record["data"], record["stream"]
        deleted = data.get("_ab_cdc_deleted_at") is not None
        if data.get("id") is None:
            continue
        if stream == "users":
            valid = data.get("created_at") is not None and (deleted or data.get("type") in ("customer", "driver"))
        else:
            valid = deleted or (data.get("customer_id") is not None and data.get("requested_at") is not None)
        if not valid:
            continue
        key = order_key(data)
        current = latest[stream].get(data["id"])
        if current is None or key >= current[0]:
            latest[stream][data["id"]] = (key, data)
    users = {uid: (d.get("type"), d.get("_ab_cdc_deleted_at") is not None) for uid, (_, d) in latest["users"].items()}
    result = {"users": users, "rides": {}, "pending": {}, "deleted": set(), "drivers": {}}
    for rid, (_, d) in latest["rides"].items():
        if d.get("_ab_cdc_deleted_at") is not None:
            result["deleted"].add(rid)
            continue
        ok = users.get(d["customer_id"], (None,))[0] == "customer" and (
            d.get("driver_id") is None or users.get(d["driver_id"], (None,))[0] == "driver")
        target = result["rides"] if ok else result["pending"]
        target[rid] = (d["status"], d["customer_id"], d.get("driver_id"))
        if ok and d.get("driver_id") is not None:
            stats = result["drivers"].setdefault(d["driver_id"], [0, 0, 0])
            stats[0] += 1
            if d["status"] == "completed":
                stats[1] += 1
                stats[2] += round(d["distance_km"] * 1000)
    return result


def observed(lake: Path) -> dict:
    def table(layer, name):
        try:
            return ridelake.read_table(str(lake), layer, name)
        except ridelake.MissingTableError:
            return None

    result = {"users": {}, "rides": {}, "pending": {}, "deleted": set(), "drivers": {}}
    users = table("silver", "users")
    if users is not None:
        assert users["id"].n_unique() == users.height
        result["users"] = {r["id"]: (r["type"], r["is_deleted"]) for r in users.iter_rows(named=True)}
    for name, key in (("rides", "rides"), ("rides_pending", "pending")):
        frame = table("silver", name)
        if frame is not None:
            assert frame["id"].n_unique() == frame.height, name
            result[key] = {r["id"]: (r["status"], r["customer_id"], r["driver_id"]) for r in frame.iter_rows(named=True)}
    deleted = table("silver", "rides_deleted")
    if deleted is not None:
        result["deleted"] = set(deleted["id"].to_list())
    stats = table("gold", "driver_stats")
    if stats is not None:
        result["drivers"] = {r["driver_id"]: [r["rides"], r["completed"], round(r["distance_km"] * 1000)]
                             for r in stats.iter_rows(named=True)}
    return result


def sync(tmp: Path, lake: Path, cat: Path, messages: list[dict]) -> None:
    if not messages:
        return
    stdin = "\n".join(json.dumps(m) for m in messages).encode()
    run = run_dest("write", "--config", str(local_config(tmp, lake / "bronze")), "--catalog", str(cat), stdin=stdin)
    assert run.returncode == 0, run.stderr


@settings(max_examples=20, deadline=None, database=DirectoryBasedExampleDatabase(str(REPO / "tests/e2e/hypothesis-db")),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(history=events, cuts=st.lists(st.integers(0, 200), max_size=3), swaps=st.lists(st.integers(0, 200), max_size=6))
def test_silver_and_gold_equal_a_replay_of_the_history(tmp_path_factory, history, cuts, swaps):
    tmp = tmp_path_factory.mktemp("prop")
    messages = history_to_messages(history)
    for s in swaps:  # out-of-order arrival, across streams too
        if len(messages) > 1:
            i = s % (len(messages) - 1)
            messages[i], messages[i + 1] = messages[i + 1], messages[i]
    lake, cat = tmp / "lake", catalog(tmp)
    bounds = sorted({c % (len(messages) + 1) for c in cuts} | {len(messages)})
    start = 0
    for end in bounds:
        sync(tmp, lake, cat, messages[start:end])
        start = end
        if (lake / "bronze").exists():
            ridelake.build_silver(str(lake))
            ridelake.build_gold(str(lake))
    expected = oracle(messages)
    assert observed(lake) == expected
    if (lake / "bronze").exists():
        assert ridelake.build_silver(str(lake))["noop"]
        assert ridelake.build_gold(str(lake))["noop"]


def test_generated_volume_silver_gold_and_readers(tmp_path):
    """A realistic volume from the generator; independent readers see the right types."""
    import duckdb
    import duckdb_ext
    from deltalake import DeltaTable
    messages, cat = generate(tmp_path, "--records", "40000", "--state-every", "5000")
    lake = tmp_path / "lake"
    run = run_dest("write", "--config", str(local_config(tmp_path, lake / "bronze")), "--catalog", str(cat),
                   stdin=messages.read_bytes())
    assert run.returncode == 0
    report = ridelake.build_silver(str(lake))
    assert report["rows_read"] == 40000 and report["quarantined"] > 0 and report["pending"] > 0
    gold = ridelake.build_gold(str(lake))
    assert gold["days_recomputed"] > 30
    rides = DeltaTable(str(lake / "silver/rides"))
    assert rides.metadata().partition_columns == ["year", "month", "day"]
    assert rides.metadata().name == "silver_rides"
    with duckdb_ext.init(duckdb.connect()) as con:
        n, kind, fare = con.execute(f"""select count(*), typeof(any_value(requested_at)), typeof(any_value(fare_amount))
                                        from delta_scan('{lake}/silver/rides')""").fetchone()
        assert n == report["rides_upserted"]
        assert (kind, fare) == ("TIMESTAMP WITH TIME ZONE", "DOUBLE")
        total, = con.execute(f"select sum(completed) from delta_scan('{lake}/gold/driver_stats')").fetchone()
    completed = ridelake.read_table(str(lake), "silver", "rides").filter(
        (pl.col("status") == "completed") & pl.col("driver_id").is_not_null()).height
    assert total == completed


def test_silver_and_gold_on_s3(s3, tmp_path):
    """The whole chain on an S3 server: connector → bronze, ridelake → silver and gold."""
    from deltalake import DeltaTable
    bucket = s3.new_bucket()
    messages, cat = generate(tmp_path, "--records", "8000", "--state-every", "2000")
    run = run_dest("write", "--config", str(s3.config(tmp_path, bucket, "lake/bronze")), "--catalog", str(cat),
                   stdin=messages.read_bytes())
    assert run.returncode == 0, run.stderr
    lake = f"s3://{bucket}/lake"
    report = ridelake.build_silver(lake, storage_options=s3.storage_options())
    assert report["rows_read"] == 8000 and report["rides_upserted"] > 0
    ridelake.build_gold(lake, storage_options=s3.storage_options())
    assert ridelake.build_silver(lake, storage_options=s3.storage_options())["noop"]
    stats = ridelake.read_table(lake, "gold", "driver_stats", storage_options=s3.storage_options())
    rides = DeltaTable(f"{lake}/silver/rides", storage_options=s3.storage_options()).to_pyarrow_table()
    completed = sum(1 for s, d in zip(rides["status"].to_pylist(), rides["driver_id"].to_pylist()) if s == "completed" and d is not None)
    assert stats["completed"].sum() == completed


def test_typed_errors(tmp_path):
    with pytest.raises(ridelake.MissingTableError, match="bronze table"):
        ridelake.build_silver(str(tmp_path / "empty-lake"))
    with pytest.raises(ridelake.ConfigError, match="only local paths"):
        ridelake.build_silver("gs://bucket/lake")
    with pytest.raises(ridelake.ConfigError, match="access_key_id"):
        ridelake.build_silver("s3://bucket/lake", storage_options={"AWS_ENDPOINT_URL": "http://127.0.0.1:9"})
    with pytest.raises(ridelake.ConfigError, match="layer"):
        ridelake.read_table(str(tmp_path), "platinum", "x")
    assert issubclass(ridelake.MissingTableError, ridelake.RidelakeError)


def test_killed_python_runs_then_a_rerun_equal_a_clean_run(tmp_path):
    """`build_silver`/`build_gold` in a Python process killed with SIGKILL at random moments, then
    rerun to the end, give the same silver and gold as one clean run from the same bronze."""
    import random
    import shutil
    import signal

    from polars.testing import assert_frame_equal
    import subprocess
    import sys
    import time

    messages, cat = generate(tmp_path, "--records", "60000", "--state-every", "5000", "--seed", "13")
    clean = tmp_path / "clean"
    run = run_dest("write", "--config", str(local_config(tmp_path, clean / "bronze")), "--catalog", str(cat),
                   stdin=messages.read_bytes())
    assert run.returncode == 0, run.stderr
    killed = tmp_path / "killed"
    shutil.copytree(clean / "bronze", killed / "bronze")
    ridelake.build_silver(str(clean))
    ridelake.build_gold(str(clean))

    job = f"import ridelake; ridelake.build_silver({str(killed)!r}); ridelake.build_gold({str(killed)!r})"
    # The clean run's duration bounds the kill moments, so that some land in every write.
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", f"import ridelake; ridelake.lake_summary({str(clean)!r})"], check=True)
    import_cost = time.monotonic() - started
    rng = random.Random(13)
    kills = 0
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", job])
        time.sleep(import_cost + rng.uniform(0.0, 1.5))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    subprocess.run([sys.executable, "-c", job], check=True)
    assert kills > 0, "no run was killed: the kill moments need to be earlier"
    for layer, tables in [("silver", ["users", "rides", "rides_pending", "rides_deleted", "quarantine"]),
                          ("gold", ["daily_city_kpis", "driver_stats", "customer_totals", "monthly_distance"])]:
        for table in tables:
            a = ridelake.read_table(str(clean), layer, table)
            b = ridelake.read_table(str(killed), layer, table)
            keys = [c for c in ("id", "table", "_airbyte_raw_id", "year", "month", "day", "city", "driver_id", "customer_id") if c in a.columns]
            drop = [c for c in ("bronze_version",) if c in a.columns]
            a, b = a.drop(drop).sort(keys), b.drop(drop).sort(keys)
            if layer == "silver":
                assert a.equals(b), f"{layer}/{table} differs after killed runs"
            else:  # sums of floats may differ in the last bits (parallel summation order)
                assert_frame_equal(a, b, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
