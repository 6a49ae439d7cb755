"""The destination against a local folder: spec, check, golden streams, states, bad input,
failures and crashes. Every stdout line of every run is validated as an AirbyteMessage."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import duckdb
import duckdb_ext
import pytest

from conftest import (DEST, REPO, count_records, generate, input_states, local_config, read_delta, run_dest,
                      write_json)


def test_spec_is_the_repository_spec():
    run = run_dest("spec")
    assert run.returncode == 0
    [spec] = run.of("SPEC")
    assert spec["spec"] == json.loads((REPO / "airbyte-spec.json").read_text())
    assert set(spec["spec"]["supported_destination_sync_modes"]) >= {"append", "overwrite"}


def test_check_local_succeeds_and_leaves_nothing(tmp_path):
    lake = tmp_path / "lake"
    run = run_dest("check", "--config", str(local_config(tmp_path, lake)))
    [status] = run.of("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "SUCCEEDED", status
    assert list(lake.rglob("*")) == []


@pytest.mark.parametrize("config, needle", [
    ({}, "storage"),
    ({"storage": {"storage_type": "S3"}}, "s3_bucket_name"),
    ({"storage": {"storage_type": "Local", "local_path": "/x"}, "compression": "brotli9"}, "compression"),
    ({"storage": {"storage_type": "S3", "s3_bucket_name": "b", "s3_endpoint": "http://127.0.0.1:9"}}, "access_key_id"),
])
def test_check_reports_invalid_config(tmp_path, config, needle):
    run = run_dest("check", "--config", str(write_json(tmp_path / "c.json", config)))
    [status] = run.of("CONNECTION_STATUS")
    assert status["connectionStatus"]["status"] == "FAILED"
    assert needle in status["connectionStatus"]["message"]


def test_write_without_config_is_a_config_error(tmp_path):
    run = run_dest("write", "--config", str(tmp_path / "missing.json"), "--catalog", str(tmp_path / "c.json"))
    assert run.returncode != 0
    assert run.error["failure_type"] == "config_error"


def test_golden_stream_rows_states_and_counts(tmp_path):
    messages, catalog = generate(tmp_path, "--records", "30000", "--state-every", "4000", "--seed", "7")
    lake = tmp_path / "lake"
    run = run_dest("write", "--config", str(local_config(tmp_path, lake, flush_interval_seconds=0)),
                   "--catalog", str(catalog), stdin=messages.read_bytes())
    assert run.returncode == 0, run.stderr
    sent = input_states(messages)
    echoed = run.states
    total = sum(s["destinationStats"]["recordCount"] for s in echoed)
    # Every state, in order, unchanged but for destinationStats.
    assert len(echoed) == len(sent)
    for got, want in zip(echoed, sent):
        stats = got.pop("destinationStats")
        assert got == want
        assert stats["recordCount"] == want["sourceStats"]["recordCount"]
    counts = count_records(messages)
    users = read_delta(str(lake / "ridehail/users"))
    rides = read_delta(str(lake / "ridehail/rides"))
    assert (users.height, rides.height) == (counts["users"], counts["rides"])
    assert total == sum(counts.values())
    assert rides["_airbyte_raw_id"].n_unique() == rides.height
    # Deletes, late users and nulls arrive as data.
    assert rides["_ab_cdc_deleted_at"].is_not_null().sum() > 0
    assert rides["requested_at"].is_null().sum() + rides["customer_id"].is_null().sum() > 0


def test_states_wait_for_their_commit(tmp_path):
    """With a long commit interval, states are echoed only once data is committed (at the end)."""
    messages, catalog = generate(tmp_path, "--records", "5000", "--state-every", "1000")
    lake = tmp_path / "lake"
    run = run_dest("write", "--config", str(local_config(tmp_path, lake, flush_interval_seconds=3600)),
                   "--catalog", str(catalog), stdin=messages.read_bytes())
    assert run.returncode == 0
    assert len(run.states) == len(input_states(messages))
    from deltalake import DeltaTable
    # One commit per table for the whole sync (version 0 is the create).
    assert DeltaTable(str(lake / "ridehail/rides")).version() == 1


def test_no_state_is_echoed_when_a_commit_fails(tmp_path):
    messages, catalog = generate(tmp_path, "--records", "6000", "--state-every", "1000")
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake, flush_interval_seconds=0)
    # The 5th commit (and every later one) fails, as a storage outage would.
    run = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=messages.read_bytes(),
                   env={"DESTINATION_DELTA_LAKE_FAIL_COMMIT": "5"})
    assert run.returncode != 0
    assert run.error is not None and "injected" in run.error["internal_message"]
    assert 0 < len(run.states) < len(input_states(messages))
    # Nothing is echoed after the failure.
    kinds = [m["type"] for m in run.messages]
    assert "STATE" not in kinds[kinds.index("TRACE"):]
    # What the echoed states cover is in the tables; a retry from the last echoed state loses nothing.
    covered = sum(s["destinationStats"]["recordCount"] for s in run.states)
    rows = read_delta(str(lake / "ridehail/users")).height + read_delta(str(lake / "ridehail/rides")).height
    assert rows >= covered


def test_killed_at_random_points_then_rerun_loses_nothing(tmp_path):
    """SIGKILL the writer at random moments; rerun from the last echoed state each time (what the
    platform does). In the end every record of the input is in bronze at least once."""
    messages, catalog = generate(tmp_path, "--records", "60000", "--state-every", "2000", "--seed", "3")
    lines = messages.read_bytes().splitlines(keepends=True)
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake, flush_interval_seconds=0)
    rng = random.Random(11)
    start = 0
    for attempt in range(4):
        proc = subprocess.Popen([str(DEST), "write", "--config", str(config), "--catalog", str(catalog)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        chunk = b"".join(lines[start:])
        kill_after = rng.uniform(0.05, 0.6)
        try:
            proc.stdin.write(chunk[: len(chunk) // 2])
            time.sleep(kill_after)
        except BrokenPipeError:
            pass
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        echoed = [json.loads(l)["state"] for l in out.decode().splitlines() if '"type":"STATE"' in l]
        if echoed:
            # Resume after the last echoed state: find it in the input (states are unique here).
            last = echoed[-1]
            last.pop("destinationStats")
            for i in range(start, len(lines)):
                if lines[i].startswith(b'{"state"') and json.loads(lines[i])["state"] == last:
                    start = i + 1
                    break
    final = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=b"".join(lines[start:]))
    assert final.returncode == 0
    want = {(m["record"]["stream"], json.dumps(m["record"]["data"], sort_keys=True))
            for m in map(json.loads, lines) if m.get("type") == "RECORD"}
    got = set()
    for stream in ("users", "rides"):
        frame = read_delta(str(lake / f"ridehail/{stream}"))
        got |= {(stream, i) for i in frame["_airbyte_raw_id"]}
        # Compare by (id, cdc position, deleted) which identify a change in this generator.
    def key(stream, data):
        return (stream, data["id"], data.get("_ab_cdc_log_pos"), data.get("_ab_cdc_deleted_at") is not None, data.get("updated_at"))
    want_keys = {key(s, json.loads(d)) for s, d in want}
    got_keys = set()
    for stream in ("users", "rides"):
        frame = read_delta(str(lake / f"ridehail/{stream}"))
        for row in frame.select("id", "_ab_cdc_log_pos", "_ab_cdc_deleted_at", "updated_at").iter_rows():
            # DATETIME arrives without a zone (timestamp_without_timezone): the message's text.
            updated = row[3].strftime("%Y-%m-%dT%H:%M:%S.%f") if row[3] else None
            got_keys.add((stream, row[0], row[1], row[2] is not None, updated))
    assert want_keys <= got_keys, f"lost {len(want_keys - got_keys)} changes"


def test_malformed_line_fails_clearly_and_keeps_committed_progress(tmp_path):
    messages, catalog = generate(tmp_path, "--records", "3000", "--state-every", "1000")
    lines = messages.read_bytes().splitlines(keepends=True)
    bad_at = next(i for i, l in enumerate(lines) if l.startswith(b'{"state"')) + 5
    lines.insert(bad_at, b'{"type":"RECORD","record":{"stream":"rides", truncated\n')
    lake = tmp_path / "lake"
    run = run_dest("write", "--config", str(local_config(tmp_path, lake, flush_interval_seconds=0)),
                   "--catalog", str(catalog), stdin=b"".join(lines))
    assert run.returncode != 0
    assert run.error["failure_type"] == "system_error"
    assert f"input line {bad_at + 1}" in run.error["message"]
    assert len(run.states) == 1


def test_unknown_streams_are_counted_as_rejected(tmp_path):
    catalog = write_json(tmp_path / "cat.json", {"streams": [{"stream": {"name": "known", "json_schema": {
        "properties": {"id": {"type": "integer"}}}}, "destination_sync_mode": "append"}]})
    rec = lambda s, i: json.dumps({"type": "RECORD", "record": {"stream": s, "emitted_at": 1, "data": {"id": i}}})
    state = json.dumps({"type": "STATE", "state": {"type": "GLOBAL", "global": {"shared_state": {}, "stream_states": []},
                                                  "sourceStats": {"recordCount": 3.0}}})
    stdin = "\n".join([rec("known", 1), rec("ghost", 2), rec("ghost", 3), state]).encode()
    lake = tmp_path / "lake"
    run = run_dest("write", "--config", str(local_config(tmp_path, lake)), "--catalog", str(catalog), stdin=stdin)
    assert run.returncode == 0
    [echo] = run.states
    assert echo["destinationStats"] == {"recordCount": 1.0, "rejectedRecordCount": 2.0}
    assert any("ghost" in m["log"]["message"] for m in run.of("LOG"))


def test_wrong_types_are_nulled_recorded_and_rescued(tmp_path):
    props = {"id": {"type": "integer"}, "n": {"type": "number"}, "ok": {"type": "boolean"},
             "d": {"type": "string", "format": "date"}, "ts": {"type": "string", "format": "date-time"},
             "obj": {"type": "object"}, "s": {"type": "string"}}
    catalog = write_json(tmp_path / "cat.json", {"streams": [{"stream": {"name": "t", "namespace": "ns",
        "json_schema": {"properties": props}}, "destination_sync_mode": "append", "generation_id": 3, "sync_id": 9}]})
    huge = "x" * (8 * 1024 * 1024)
    rows = [
        {"id": 1, "n": 1.5, "ok": True, "d": "2024-02-29", "ts": "2024-01-01T10:00:00+02:00", "obj": {"a": [1]}, "s": "é\n\"q\""},
        {"id": "oops", "n": "NaN", "ok": "maybe", "d": "31/12/2024", "ts": "yesterday", "obj": [1, 2], "s": 12, "extra": {"k": 1}},
        {"id": 99999999999999999999, "s": huge},
        {"id": 4, "id_dup": 1},
    ]
    stdin = "\n".join(json.dumps({"type": "RECORD", "record": {"namespace": "ns", "stream": "t", "emitted_at": 1700000000000,
                                                               "data": r}}) for r in rows)
    lake = tmp_path / "lake"
    run = run_dest("write", "--config", str(local_config(tmp_path, lake)), "--catalog", str(catalog), stdin=stdin.encode())
    assert run.returncode == 0, run.stderr
    frame = read_delta(str(lake / "ns/t")).sort("_airbyte_extracted_at")
    import polars as pl
    good, bad, big, _ = frame.rows(named=True)
    assert good["id"] == 1 and good["ok"] is True and str(good["d"]) == "2024-02-29"
    assert good["ts"].isoformat() == "2024-01-01T08:00:00+00:00"
    assert json.loads(good["obj"]) == {"a": [1]} and good["s"] == 'é\n"q"'
    assert good["_airbyte_meta"] == {"sync_id": 9, "changes": []} and good["_airbyte_rescued_data"] is None
    assert good["_airbyte_generation_id"] == 3
    assert bad["id"] is None and bad["n"] is None and bad["ok"] is None and bad["d"] is None and bad["ts"] is None
    assert bad["s"] == "12" and json.loads(bad["obj"]) == [1, 2]
    nulled = {c["field"]: c["reason"] for c in bad["_airbyte_meta"]["changes"]}
    assert set(nulled) == {"id", "n", "ok", "d", "ts"} and all(c["change"] == "NULLED" for c in bad["_airbyte_meta"]["changes"])
    rescued = json.loads(bad["_airbyte_rescued_data"])
    assert rescued == {"id": "oops", "n": "NaN", "ok": "maybe", "d": "31/12/2024", "ts": "yesterday", "extra": {"k": 1}}
    assert big["id"] is None and len(big["s"]) == len(huge)
    assert {c["reason"] for c in big["_airbyte_meta"]["changes"]} == {"DESTINATION_FIELD_SIZE_LIMITATION"}
    assert json.loads(big["_airbyte_rescued_data"]) == {"id": 99999999999999999999}


def test_names_cannot_escape_the_base(tmp_path):
    catalog = write_json(tmp_path / "cat.json", {"streams": [{"stream": {"name": "../../escape", "namespace": "../..",
        "json_schema": {"properties": {"id": {"type": "integer"}}}}, "destination_sync_mode": "append"}]})
    stdin = json.dumps({"type": "RECORD", "record": {"namespace": "../..", "stream": "../../escape", "emitted_at": 1,
                                                     "data": {"id": 1}}}).encode()
    lake = tmp_path / "deep" / "lake"
    run = run_dest("write", "--config", str(local_config(tmp_path, lake)), "--catalog", str(catalog), stdin=stdin)
    assert run.returncode == 0
    assert not (tmp_path / "escape").exists()
    tables = [p.parent for p in lake.rglob("_delta_log")]
    assert len(tables) == 1 and tables[0].is_relative_to(lake)


def test_schema_evolution_adds_columns_and_survives_type_changes(tmp_path):
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake)
    def sync(props, data):
        catalog = write_json(tmp_path / "cat.json", {"streams": [{"stream": {"name": "t", "json_schema": {"properties": props}},
                                                                  "destination_sync_mode": "append"}]})
        stdin = "\n".join(json.dumps({"type": "RECORD", "record": {"stream": "t", "emitted_at": 1, "data": d}}) for d in data)
        run = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=stdin.encode())
        assert run.returncode == 0, run.stderr
    sync({"id": {"type": "integer"}, "v": {"type": "integer"}}, [{"id": 1, "v": 10}])
    sync({"id": {"type": "integer"}, "v": {"type": "string"}, "new": {"type": "boolean"}},
         [{"id": 2, "v": "20", "new": True}, {"id": 3, "v": "abc", "new": False}])
    frame = read_delta(str(lake / "default/t")).sort("id")
    assert frame["v"].to_list() == [10, 20, None]
    assert frame["new"].to_list() == [None, True, False]
    assert json.loads(frame["_airbyte_rescued_data"][2]) == {"v": "abc"}


def test_overwrite_replaces_atomically_and_generations_are_honoured(tmp_path):
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake)
    def sync(mode, gen, min_gen, ids):
        catalog = write_json(tmp_path / "cat.json", {"streams": [{"stream": {"name": "t", "json_schema": {
            "properties": {"id": {"type": "integer"}}}}, "destination_sync_mode": mode, "generation_id": gen,
            "minimum_generation_id": min_gen, "sync_id": gen}]})
        stdin = "\n".join(json.dumps({"type": "RECORD", "record": {"stream": "t", "emitted_at": 1, "data": {"id": i}}}) for i in ids)
        run = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=stdin.encode())
        assert run.returncode == 0, run.stderr
        return sorted(read_delta(str(lake / "default/t"))["id"].to_list())
    assert sync("append", 1, 1, [1, 2]) == [1, 2]          # PyAirbyte sends gen=min=1: nothing deleted
    assert sync("append", 1, 1, [3]) == [1, 2, 3]
    assert sync("append", 2, 0, [4]) == [1, 2, 3, 4]       # new generation, keep older ones
    assert sync("append", 3, 3, [5]) == [5]                 # truncate refresh: only generation 3 remains
    assert sync("overwrite", 4, 0, [6, 7]) == [6, 7]        # overwrite: old data gone at the end
    from deltalake import DeltaTable
    ops = [h["operation"] for h in DeltaTable(str(lake / "default/t")).history()]
    assert ops[0] == "WRITE"  # the overwrite is one commit: new files in, old files out


@pytest.mark.parametrize("written_by", ["this release", "a release without stats on every column"])
def test_a_truncate_refresh_of_a_wide_stream_leaves_only_its_generation(tmp_path, written_by):
    """A source table wider than Delta's default 32 statistics columns: the generation cleanup of
    a truncate refresh must still find the older generation's files. Bronze records statistics
    for every column; files of an older release (none for the meta columns, which come last)
    are read to learn their generations."""
    import pyarrow as pa
    from deltalake import DeltaTable, write_deltalake

    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake)
    properties = {"id": {"type": "integer"}, **{f"c{i:02d}": {"type": "string"} for i in range(40)}}

    def sync(gen, min_gen, ids):
        catalog = write_json(tmp_path / "cat.json", {"streams": [{"stream": {"name": "wide", "json_schema": {"properties": properties}},
            "destination_sync_mode": "append", "generation_id": gen, "minimum_generation_id": min_gen, "sync_id": gen}]})
        stdin = "\n".join(json.dumps({"type": "RECORD", "record": {"stream": "wide", "emitted_at": 1,
                           "data": {"id": i, **{f"c{c:02d}": f"v{i}-{c}" for c in range(40)}}}}) for i in ids)
        run = run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=stdin.encode())
        assert run.returncode == 0, run.stderr[-2000:]
        return sorted(read_delta(str(lake / "default/wide"))["id"].to_list())

    assert sync(1, 0, [1, 2]) == [1, 2]
    assert sync(1, 0, [3]) == [1, 2, 3]
    table = DeltaTable(str(lake / "default/wide"))
    adds = pa.table(table.get_add_actions(flatten=True)).column_names
    for column in ("_airbyte_generation_id", "_airbyte_extracted_at", "_airbyte_rescued_data", "c39"):
        assert f"null_count.{column}" in adds, f"no statistics for {column}: {sorted(adds)[:8]}..."
    if written_by != "this release":
        # The table as an older release left it: the same rows, without
        # delta.dataSkippingNumIndexedCols, so its files keep Delta's default of 32 statistics
        # columns (none for the meta columns, after the 41 data columns). (Python's writer
        # refuses ridelake's own properties, which the destination does not need.)
        data = table.to_pyarrow_table()
        shutil.rmtree(lake / "default/wide")
        write_deltalake(str(lake / "default/wide"), data)
        old = DeltaTable(str(lake / "default/wide"))
        assert "delta.dataSkippingNumIndexedCols" not in old.metadata().configuration
        assert "null_count._airbyte_generation_id" not in pa.table(old.get_add_actions(flatten=True)).column_names
    assert sync(2, 0, [4]) == [1, 2, 3, 4]      # a new generation keeps the older ones
    # (an older release's table gets the property at its next sync)
    assert DeltaTable(str(lake / "default/wide")).metadata().configuration.get("delta.dataSkippingNumIndexedCols") == "4096"
    assert sync(3, 3, [5]) == [5]               # truncate refresh: only generation 3 remains
    assert sync(3, 3, [6]) == [5, 6]
    stats = pa.table(DeltaTable(str(lake / "default/wide")).get_add_actions(flatten=True)).column("null_count._airbyte_generation_id")
    assert stats.null_count == 0, "every file of generation 3 has statistics for it"


def test_duckdb_reads_types(tmp_path):
    messages, catalog = generate(tmp_path, "--records", "5000")
    lake = tmp_path / "lake"
    run = run_dest("write", "--config", str(local_config(tmp_path, lake)), "--catalog", str(catalog), stdin=messages.read_bytes())
    assert run.returncode == 0
    with duckdb_ext.init(duckdb.connect()) as con:
        rows = con.execute(f"""
            select count(*), typeof(any_value(requested_at)), typeof(any_value(fare_amount)),
                   typeof(any_value(customer_id)), typeof(any_value(_airbyte_meta))
            from delta_scan('{lake}/ridehail/rides')""").fetchone()
    assert rows[0] == count_records(messages)["rides"]
    # source-mysql declares DATETIME as timestamp_without_timezone: a Delta timestamp_ntz.
    assert rows[1:4] == ("TIMESTAMP", "DOUBLE", "BIGINT")
    assert rows[4].startswith("STRUCT(sync_id BIGINT, changes STRUCT(")


def test_a_failure_is_reported_while_stdin_stays_open(tmp_path):
    """The platform keeps stdin open while the source runs: a commit failure must still end the
    process at once with a TRACE, not when the source finishes."""
    messages, catalog = generate(tmp_path, "--records", "3000", "--state-every", "500")
    config = local_config(tmp_path, tmp_path / "lake", flush_interval_seconds=0)
    proc = subprocess.Popen([str(DEST), "write", "--config", str(config), "--catalog", str(catalog)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            env={**os.environ, "DESTINATION_DELTA_LAKE_FAIL_COMMIT": "1"})
    try:
        proc.stdin.write(messages.read_bytes())
        proc.stdin.flush()  # and keep it open
    except BrokenPipeError:
        pass  # it stopped reading: fine, what matters is that it exits
    try:
        code = proc.wait(timeout=60)  # TimeoutExpired here means the failure waited for stdin
    finally:
        proc.stdin.close()
    out = proc.stdout.read()
    assert code != 0
    assert b'"failure_type"' in out
