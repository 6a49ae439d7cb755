"""Hostile input and secrets: the destination refuses what it cannot read with the line's number,
never buffers an endless line, never crashes, and never lets a record's values or a credential
reach an error message, a log, a metric, a lineage event or the Delta log."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import DEST, Run, free_port, generate, local_config, run_dest, validate_lines, write_json

PLANTED = "PLANTED-4111-1111-1111-1111"
SECRET = "PLANTED-SECRET-KEY-0000"


def catalog(tmp: Path) -> Path:
    props = {"id": {"type": "integer"}, "note": {"type": "string"}, "n": {"type": "number"}}
    return write_json(tmp / "cat.json", {"streams": [{"stream": {"name": "t", "json_schema": {"properties": props}},
                                                      "destination_sync_mode": "append", "primary_key": [["id"]]}]})


def record(data: dict | str) -> str:
    body = data if isinstance(data, str) else json.dumps(data)
    return '{"type":"RECORD","record":{"stream":"t","emitted_at":1,"data":' + body + "}}"


STATE = json.dumps({"type": "STATE", "state": {"type": "GLOBAL", "global": {"shared_state": {}, "stream_states": []}}})


def every_output(tmp: Path, run: Run, lake: Path) -> str:
    """Everything a failing sync left behind: stdout, stderr, metrics, lineage, the Delta logs."""
    parts = [json.dumps(run.messages), run.stderr]
    parts += [p.read_text() for p in tmp.glob("*.prom")] + [p.read_text() for p in tmp.glob("*.jsonl") if p.name.startswith("events")]
    parts += [p.read_text() for p in lake.rglob("_delta_log/*.json")]
    return "\n".join(parts)


@pytest.mark.parametrize("bad_line", [
    record('{"id": 2, "note": "' + PLANTED + '"'),  # cut short
    '{"type":"RECORD","record":{"stream":"t","emitted_at":"' + PLANTED + '","data":{}}}',  # wrong type
    '{"type":"RECORD","record":{"stream":"t","emitted_at":1,"data":{"id": ' + PLANTED + "}}}",  # not JSON
    '{"type":"STATE","state":{"type":"GLOBAL","global":"' + PLANTED + '"',  # a broken state
], ids=["cut", "wrong-type", "bare-word", "state"])
def test_a_bad_line_is_named_by_number_and_its_values_go_nowhere(tmp_path, bad_line):
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake, flush_interval_seconds=0,
                          observability={"metrics_file": str(tmp_path / "bronze.prom"), "openlineage_file": str(tmp_path / "events.jsonl")})
    stdin = "\n".join([record({"id": 1, "note": "fine"}), STATE, bad_line, record({"id": 3})]) + "\n"
    run = run_dest("write", "--config", str(config), "--catalog", str(catalog(tmp_path)), stdin=stdin.encode())
    assert run.returncode == 1
    assert run.error["failure_type"] == "system_error"
    assert "input line 3 is not a valid Airbyte message" in run.error["message"]
    assert len(run.states) == 1, "the state before the bad line is echoed"
    assert PLANTED not in every_output(tmp_path, run, lake)


def test_a_refused_endpoint_is_transient_and_names_no_secret(tmp_path):
    messages, cat = generate(tmp_path, "--users", "20", "--rides", "20", "--changes", "0")
    storage = {"storage_type": "S3", "s3_bucket_name": "lake", "s3_endpoint": f"http://127.0.0.1:{free_port()}",
               "access_key_id": "PLANTED-ACCESS-KEY", "secret_access_key": SECRET, "s3_max_retries": 1,
               "s3_retry_timeout_seconds": 3}
    config = write_json(tmp_path / "config.json", {"storage": storage, "observability": {
        "metrics_file": str(tmp_path / "bronze.prom"), "openlineage_file": str(tmp_path / "events.jsonl")}})
    run = run_dest("write", "--config", str(config), "--catalog", str(cat), stdin=messages.read_bytes(), timeout=120)
    assert run.returncode == 1
    assert run.error["failure_type"] == "transient_error", run.error
    assert "could not reach the S3 endpoint" in run.error["message"]
    leaked = every_output(tmp_path, run, tmp_path / "none")
    assert SECRET not in leaked and "PLANTED-ACCESS-KEY" not in leaked


def test_an_endless_line_is_refused_without_being_held(tmp_path):
    """A 400 MiB line against a 1 MiB limit: refused with its number, peak RSS far below its size."""
    lake = tmp_path / "lake"
    config = local_config(tmp_path, lake, flush_interval_seconds=0, max_line_mb=1)
    probe = f"""
import resource, subprocess, sys, threading
proc = subprocess.Popen([{str(DEST)!r}, "write", "--config", {str(config)!r}, "--catalog", {str(catalog(tmp_path))!r}],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
def feed():
    try:
        proc.stdin.write(({json.dumps(record({"id": 1}) + chr(10) + STATE + chr(10))}).encode())
        proc.stdin.write(b'{{"type":"RECORD","record":{{"stream":"t","emitted_at":1,"data":{{"note":"')
        block = b"x" * (1 << 20)
        for _ in range(400):
            proc.stdin.write(block)
        proc.stdin.write(b'"}}}}}}' + bytes([10]))
        proc.stdin.close()
    except BrokenPipeError:
        pass
threading.Thread(target=feed, daemon=True).start()
out, err = proc.communicate(timeout=300)
sys.stdout.write(out.decode())
sys.stderr.write(f"RSS_KIB={{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}} RC={{proc.returncode}}")
"""
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, timeout=360)
    tail = proc.stderr.decode().rsplit("RSS_KIB=", 1)[1]
    rss_kib, rc = int(tail.split()[0]), int(tail.split("RC=")[1])
    messages = validate_lines(proc.stdout.decode())
    run = Run(rc, messages, "")
    assert rc == 1
    assert "input line 3" in run.error["message"] and "max_line_mb" in run.error["message"], run.error
    assert len(run.states) == 1
    assert rss_kib < 200 * 1024, f"peak RSS {rss_kib // 1024} MiB for a 400 MiB line"


def test_lines_longer_than_a_reader_chunk_are_kept_whole(tmp_path):
    """Lines of 20 and 9 MiB (the reader cuts input into chunks of 8 MiB) between ordinary lines and
    states: every value intact, every state echoed."""
    big = "y" * (20 << 20)
    lines = [record({"id": 1, "note": "before"}), record({"id": 2, "note": big}), STATE,
             record({"id": 3, "note": big[: 9 << 20]}), record({"id": 4}), STATE]
    lake = tmp_path / "lake"
    run = run_dest("write", "--config", str(local_config(tmp_path, lake, max_line_mb=64)), "--catalog", str(catalog(tmp_path)),
                   stdin=("\n".join(lines) + "\n").encode(), timeout=120)
    assert run.returncode == 0, run.stderr
    assert len(run.states) == 2
    notes = {row["id"]: row["note"] for row in rows(lake)}
    assert notes.keys() == {1, 2, 3, 4}
    assert notes[1] == "before" and notes[2] == big and notes[3] == big[: 9 << 20] and notes[4] is None


def test_invalid_utf8_fails_with_the_line_number(tmp_path):
    line = b'{"type":"RECORD","record":{"stream":"t","emitted_at":1,"data":{"note":"caf\xe9"}}}'
    run = run_dest("write", "--config", str(local_config(tmp_path, tmp_path / "lake")), "--catalog", str(catalog(tmp_path)),
                   stdin=STATE.encode() + b"\n" + line + b"\n")
    assert run.returncode == 1
    assert run.error["failure_type"] == "system_error"
    assert "input line 2" in run.error["message"] and "not UTF-8" in run.error["message"]


def rows(lake: Path) -> list[dict]:
    import deltalake

    return deltalake.DeltaTable(str(lake / "default" / "t")).to_pyarrow_table().to_pylist()


def changes(row: dict) -> list[tuple[str, str, str]]:
    return [(c["field"], c["change"], c["reason"]) for c in row["_airbyte_meta"]["changes"]]


def test_odd_values_are_kept_or_rescued_never_a_crash(tmp_path):
    """What each odd value becomes (the README's bronze guarantees): nothing is lost, the sync goes on."""
    deep = "[" * 100_000 + "]" * 100_000
    lines = [record('{"id": 1, "id": 2, "note": "a", "note": "b"}'),
             record('{"id": 18446744073709551615, "note": "unsigned"}'),
             record('{"id": 4, "n": 1e400, "note": "overflow"}'),
             record('{"id": 5, "n": 12345678901234567.89, "note": "decimal"}'),
             record('{"id": 6, "n": "12.50", "note": "text decimal"}'),
             record('{"id": 7, "note": ' + deep + "}"),
             record("[1, 2]"),
             STATE]
    lake = tmp_path / "lake"
    run = run_dest("write", "--config", str(local_config(tmp_path, lake)), "--catalog", str(catalog(tmp_path)),
                   stdin=("\n".join(lines) + "\n").encode())
    assert run.returncode == 0, run.error
    by_note = {r["note"]: r for r in rows(lake)}
    first = by_note["a"]
    assert first["id"] == 1 and json.loads(first["_airbyte_rescued_data"]) == {"id": 2, "note": "b"}, "first wins, later kept"
    unsigned = by_note["unsigned"]
    assert unsigned["id"] is None and '"id":18446744073709551615' in unsigned["_airbyte_rescued_data"]
    assert changes(unsigned) == [("id", "NULLED", "DESTINATION_FIELD_SIZE_LIMITATION")]
    overflow = by_note["overflow"]
    assert overflow["n"] is None and '"n":1e400' in overflow["_airbyte_rescued_data"]
    decimal = by_note["decimal"]
    assert decimal["n"] == 12345678901234567.89, "the closest double is stored"
    assert '"n":12345678901234567.89' in decimal["_airbyte_rescued_data"], "and the exact text kept"
    assert changes(decimal) == [("n", "TRUNCATED", "DESTINATION_FIELD_SIZE_LIMITATION")]
    text = by_note["text decimal"]
    assert text["n"] == 12.5 and text["_airbyte_rescued_data"] is None and changes(text) == []
    assert by_note[deep]["id"] == 7, "deep nesting in a string column is kept as its JSON text"
    [not_object] = [r for r in rows(lake) if r["id"] is None and r["note"] is None]
    assert json.loads(not_object["_airbyte_rescued_data"]) == {"_airbyte_data": [1, 2]}


def test_a_boolean_column_keeps_its_values_when_the_source_sends_0_and_1(tmp_path):
    """source-mysql 4.0 declares TINYINT(1) as an integer where 3.x declared a boolean."""
    lake = tmp_path / "lake"
    flag = lambda ty: write_json(tmp_path / f"cat-{ty}.json", {"streams": [{"stream": {"name": "t", "json_schema": {
        "properties": {"id": {"type": "integer"}, "active": {"type": ty}}}}, "destination_sync_mode": "append"}]})
    rec = lambda i, v: '{"type":"RECORD","record":{"stream":"t","emitted_at":1,"data":{"id":%d,"active":%s}}}' % (i, v)
    before = run_dest("write", "--config", str(local_config(tmp_path, lake)), "--catalog", str(flag("boolean")),
                      stdin=f"{rec(1, 'true')}\n{STATE}\n".encode())
    assert before.returncode == 0
    after = run_dest("write", "--config", str(local_config(tmp_path, lake)), "--catalog", str(flag("integer")),
                     stdin=f"{rec(2, 0)}\n{rec(3, 1)}\n{rec(4, 7)}\n{STATE}\n".encode())
    assert after.returncode == 0, after.error
    warnings = [m["log"]["message"] for m in after.of("LOG") if m["log"]["level"] == "WARN"]
    assert len(warnings) == 1 and "active" in warnings[0], warnings
    got = {r["id"]: (r["active"], r["_airbyte_rescued_data"]) for r in rows(lake)}
    assert got == {1: (True, None), 2: (False, None), 3: (True, None), 4: (None, '{"active":7}')}
