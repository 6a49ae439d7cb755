"""The real destination binary against S3 (moto and Ceph RGW) through a fault-injecting proxy
(`faultproxy.py`): throttling, server errors, lost responses, connection resets, multipart parts
cut midway, an endpoint that is down or never answers. Whatever the fault, bronze ends with every
input record exactly once (after at most one rerun from the last echoed state, as Airbyte does),
and a failed sync ends with a TRACE ERROR saying `transient_error`."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import Run, S3Server, count_records, generate, input_states, read_delta, run_dest
from faultproxy import Fault, FaultProxy

COMMIT = r"/_delta_log/\d{20}\.json$"
PARQUET = r"\.parquet$"
UPLOAD_PART = r"[?&]partNumber="
COMPLETE_UPLOAD = r"[?&]uploadId="
NAMESPACE = "ridehail"
KEY_FIELDS = ("id", "_ab_cdc_log_file", "_ab_cdc_log_pos", "_ab_cdc_cursor", "_ab_cdc_updated_at",
              "_ab_cdc_deleted_at")
SMALL = {"target_file_size_mb": 1, "flush_interval_seconds": 0}
QUICK_GIVE_UP = {"s3_max_retries": 2, "s3_retry_timeout_seconds": 5}
SEED = 20240611

Key = tuple


@dataclasses.dataclass
class Lake:
    """A fresh bucket on a real S3 server, and the fault proxy in front of that server."""
    s3: S3Server
    proxy: FaultProxy
    bucket: str
    tmp: Path

    def config(self, proxied: bool = True, storage: dict | None = None, **settings: object) -> Path:
        server = dataclasses.replace(self.s3, name=f"{self.s3.name}-proxied", endpoint=self.proxy.url) if proxied else self.s3
        path = server.config(self.tmp, self.bucket, **settings)
        if storage:
            config = json.loads(path.read_text())
            config["storage"].update(storage)
            path.write_text(json.dumps(config))
        return path

    def table(self, stream: str) -> str:
        return f"s3://{self.bucket}/bronze/{NAMESPACE}/{stream}"


@contextmanager
def open_lake(server: S3Server, tmp: Path) -> Iterator[Lake]:
    with FaultProxy(server.endpoint, seed=SEED) as proxy:
        yield Lake(server, proxy, server.new_bucket(), tmp)


@pytest.fixture
def lake(s3: S3Server, tmp_path: Path) -> Iterator[Lake]:
    with open_lake(s3, tmp_path) as opened:
        yield opened


@pytest.fixture
def moto_lake(moto_server: S3Server, tmp_path: Path) -> Iterator[Lake]:
    with open_lake(moto_server, tmp_path) as opened:
        yield opened


def write(config: Path, catalog: Path, stdin: bytes, timeout: int = 120) -> Run:
    return run_dest("write", "--config", str(config), "--catalog", str(catalog), stdin=stdin, timeout=timeout)


def normalise(stream: str, values: tuple) -> Key:
    ident, log_file, log_pos, cursor, updated, deleted = values
    return stream, ident, log_file, None if log_pos is None else float(log_pos), cursor, updated, deleted


def input_keys(lines: list[bytes]) -> Counter[Key]:
    """Each input record's identity: stream, id and CDC position (verbatim replays count twice)."""
    keys: Counter[Key] = Counter()
    for line in lines:
        if line.startswith(b'{"type":"RECORD"'):
            record = json.loads(line)["record"]
            keys[normalise(record["stream"], tuple(record["data"].get(f) for f in KEY_FIELDS))] += 1
    return keys


def bronze_keys(lake: Lake, streams: list[str]) -> Counter[Key]:
    keys: Counter[Key] = Counter()
    for stream in streams:
        frame = read_delta(lake.table(stream), lake.s3.storage_options())
        assert frame["_airbyte_raw_id"].n_unique() == frame.height, f"{stream}: a row was stored twice"
        for row in frame.select(*KEY_FIELDS).iter_rows():
            keys[normalise(stream, row)] += 1
    return keys


def assert_exactly_once(lake: Lake, messages: Path) -> None:
    counts = count_records(messages)
    want = input_keys(messages.read_bytes().splitlines())
    got = bronze_keys(lake, sorted(counts))
    lost, extra = want - got, got - want
    assert not lost and not extra, (
        f"bronze lost {sum(lost.values())} and duplicated {sum(extra.values())} records; "
        f"lost e.g. {list(lost)[:3]}, extra e.g. {list(extra)[:3]}")
    assert Counter(k[0] for k in got.elements()) == counts


def assert_all_states_echoed(run: Run, messages: Path) -> None:
    assert len(run.states) == len(input_states(messages))
    assert sum(s["destinationStats"]["recordCount"] for s in run.states) == sum(count_records(messages).values())


def assert_transient_failure(run: Run) -> None:
    assert run.returncode != 0
    last = run.messages[-1] if run.messages else None
    assert last and last["type"] == "TRACE" and last["trace"]["type"] == "ERROR", (run.messages[-3:], run.stderr[-2000:])
    assert last["trace"]["error"]["failure_type"] == "transient_error", (last["trace"]["error"], run.stderr[-2000:])


def after_last_echo(lines: list[bytes], run: Run) -> bytes:
    """The input messages Airbyte resends after a failed sync: those after the last echoed state."""
    if not run.states:
        return b"".join(lines)
    states = [i for i, line in enumerate(lines) if b'"STATE"' in line and json.loads(line)["type"] == "STATE"]
    at = states[len(run.states) - 1]
    echoed = {k: v for k, v in run.states[-1].items() if k != "destinationStats"}
    assert json.loads(lines[at])["state"] == echoed, "states are echoed in input order"
    return b"".join(lines[at + 1:])


def sync_converges(lake: Lake, messages: Path, catalog: Path, plan: list[Fault], storage: dict | None = None,
                   **settings: object) -> Run:
    """One sync under `plan`; when it fails (it must say transient), one rerun without faults from
    the last echoed state. Bronze must then hold every input record exactly once. Returns the
    first run."""
    lake.proxy.set_plan(plan)
    first = write(lake.config(storage=storage, **settings), catalog, messages.read_bytes())
    lake.proxy.set_plan([])
    if first.returncode == 0:
        assert_all_states_echoed(first, messages)
    else:
        assert_transient_failure(first)
        rest = after_last_echo(messages.read_bytes().splitlines(keepends=True), first)
        rerun = write(lake.config(proxied=False, **settings), catalog, rest)
        assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert_exactly_once(lake, messages)
    return first


@pytest.mark.parametrize("kind", ["slowdown", "error500"])
def test_throttling_and_server_errors_lose_and_duplicate_nothing(lake: Lake, kind: str):
    """With 30% of requests answered 503 SlowDown (or 500 InternalError) and some delayed, the
    sync succeeds, echoes every state, and bronze holds each record exactly once."""
    messages, catalog = generate(lake.tmp, "--records", "2000", "--state-every", "500", "--seed", "5")
    lake.proxy.set_plan([Fault(kind, probability=0.3), Fault("delay", count=5, skip=20, seconds=0.2)])
    run = write(lake.config(**SMALL), catalog, messages.read_bytes())
    lake.proxy.set_plan([])
    assert run.returncode == 0, run.stderr[-2000:]
    assert lake.proxy.counts[kind] > 0 and lake.proxy.counts["delay"] > 0, lake.proxy.counts
    assert_all_states_echoed(run, messages)
    assert_exactly_once(lake, messages)


def test_responses_lost_after_writes_converge(lake: Lake):
    """Responses dropped after the data PUT or the Delta commit PUT went through (table creation
    included): the sync succeeds or fails as transient, and bronze ends with every record exactly
    once."""
    messages, catalog = generate(lake.tmp, "--records", "4000", "--state-every", "500", "--seed", "6")
    plan = [Fault("drop_after", probability=0.3, method="PUT", path=COMMIT),
            Fault("drop_after", probability=0.3, method="PUT", path=PARQUET)]
    sync_converges(lake, messages, catalog, plan, **SMALL)
    targets = [e.target for e in lake.proxy.events]
    assert any(t.endswith(".json") for t in targets) and any(t.endswith(".parquet") for t in targets), targets


@pytest.mark.parametrize("tables", ["new", "existing"])
def test_connection_resets_converge(lake: Lake, tables: str):
    """Connections reset before the request reaches S3 (any request; table creation too when the
    tables are new): success or a transient failure, and every record exactly once after the
    rerun."""
    messages, catalog = generate(lake.tmp, "--records", "4000", "--state-every", "500", "--seed", "7")
    if tables == "existing":
        assert write(lake.config(proxied=False, **SMALL), catalog, b"").returncode == 0
    sync_converges(lake, messages, catalog, [Fault("reset_before", probability=0.15)], **SMALL)
    assert lake.proxy.counts["reset_before"] > 0, lake.proxy.counts


def test_multipart_parts_cut_midway_converge(lake: Lake):
    """Multipart UploadPart bodies cut halfway (connection reset mid-body), and the response to
    CompleteMultipartUpload lost: the sync succeeds or fails as transient, and bronze ends with
    every record exactly once. (Uncompressed Parquet makes the one rides file about 9 MiB, above
    the 5 MiB part size.)"""
    messages, catalog = generate(lake.tmp, "--records", "50000", "--state-every", "50000", "--seed", "8")
    plan = [Fault("cut_body", count=3, method="PUT", path=UPLOAD_PART, fraction=0.5),
            Fault("drop_after", count=1, method="POST", path=COMPLETE_UPLOAD)]
    sync_converges(lake, messages, catalog, plan, target_file_size_mb=16, flush_interval_seconds=0,
                   compression="uncompressed")
    assert lake.proxy.counts["cut_body"] > 0 and lake.proxy.counts["drop_after"] > 0, lake.proxy.counts


def test_commits_refused_on_one_table_mid_sync_converge(moto_lake: Lake):
    """S3 refusing every commit PUT of `rides` from its 7th on: the sync fails as transient after
    `users` committed its records of the same state, and the rerun from the last echoed state
    must not store those records twice. (The fault does not depend on the S3 backend: moto only.)"""
    lake = moto_lake
    messages, catalog = generate(lake.tmp, "--records", "4000", "--state-every", "500", "--seed", "9")
    plan = [Fault("error500", probability=1.0, method="PUT", path=rf"/rides{COMMIT}", skip=6)]
    first = sync_converges(lake, messages, catalog, plan, storage={"s3_max_retries": 1}, **SMALL)
    assert first.returncode != 0 and lake.proxy.counts["error500"] > 0, lake.proxy.counts


def test_endpoint_down_fails_as_transient_in_bounded_time(lake: Lake):
    """An S3 endpoint answering 503 to everything for the whole sync: with s3_max_retries=2 and
    s3_retry_timeout_seconds=5 the sync gives up within those 5 s, echoes no state, and says
    `transient_error` (the default 10 retries take about 9 s for the first request alone)."""
    messages, catalog = generate(lake.tmp, "--records", "500", "--state-every", "100")
    lake.proxy.set_plan([Fault("slowdown", probability=1.0)])
    started = time.monotonic()
    run = write(lake.config(storage=QUICK_GIVE_UP, **SMALL), catalog, messages.read_bytes(), timeout=90)
    elapsed = time.monotonic() - started
    assert lake.proxy.counts["slowdown"] > 0
    assert_transient_failure(run)
    assert run.states == []
    assert elapsed < 5, f"took {elapsed:.1f} s to give up"


def test_endpoint_that_never_answers_fails_as_transient_in_bounded_time(moto_lake: Lake):
    """An endpoint that accepts connections but never answers: with s3_retry_timeout_seconds=5 the
    sync fails as transient within 12 s instead of hanging. (The proxy never forwards here, so
    one S3 backend suffices.)"""
    lake = moto_lake
    messages, catalog = generate(lake.tmp, "--records", "500", "--state-every", "100")
    lake.proxy.set_plan([Fault("delay", probability=1.0, seconds=3600)])
    try:
        run = write(lake.config(storage=QUICK_GIVE_UP, **SMALL), catalog, messages.read_bytes(), timeout=12)
    except subprocess.TimeoutExpired:
        pytest.fail(f"no outcome after 12 s; requests held by the proxy: {[e.target for e in lake.proxy.events]}")
    assert lake.proxy.counts["delay"] > 0
    assert_transient_failure(run)
    assert run.states == []
