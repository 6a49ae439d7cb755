"""Soak benchmark: destination-delta-lake on Ceph RGW under a steady paced load.

usage: python bench/soak.py [--rate 20000] [--minutes 15] [--flush-seconds 5] [--keep] [--json FILE]

A private Ceph RGW (scripts/start-rgw.sh, free ports, its memory store sized for the run) gets a
bucket; `ridelake-gen` streams RATE × MINUTES × 60 records of binlog changes with a GLOBAL STATE
every 0.2 s of records, and a pacer in this process forwards them to `destination-delta-lake
write` (S3 on RGW, `flush_interval_seconds` = FLUSH) at RATE records/s, in bursts every 20 ms.
Measured:

- freshness: a record is emitted at its scheduled time (start + index / RATE; a pacer that falls
  behind makes records older, it does not hide the wait). It is *committed* when the destination
  echoes the first STATE after it (a STATE is echoed only once the Delta commits covering the
  records before it succeeded), and *visible* when a reader polling the bucket every 0.5 s (boto3,
  the tables' `_delta_log`) sees a commit whose row counts cover it. p50/p95/p99/max over records.
  Echoes are exact in time but late for records that a timer commit made visible before the next
  state; the reader's figure includes up to one poll interval;
- the destination's RSS every second (/proc), by thirds of the run: flat means the last third's
  median is within 10% + 16 MiB of the first third's (the trend after the first third, in MiB per
  minute, is printed too); its peak RSS and CPU seconds (wait4);
- checks (a failure exits 1): every STATE sent was echoed, in order, unchanged but for
  `destinationStats`, whose `recordCount` is the records since the previous state; rows per table
  in bronze (Python `deltalake` over S3) equal the records sent;
- what the run left: commits, data files referenced by each table and objects in the bucket;
- the rate the pacer achieved and its lag behind the schedule: a write blocks while the
  destination does not read (at its start, while it creates the tables); it kept up when it
  achieved 99% of RATE with a p99 lag under 1 s.

A missed p95 target (< 10 s at 20,000 records/s) is reported, not an error. Only binlog changes are
sent (`--skip-snapshot true`): the steady load of a connection past its initial load. The figures
go to a JSON file (bench-out/soak-<time>.json by default); the work folder (RGW logs, the
destination's messages) stays with --keep or after a failure.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from botocore.config import Config
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("RIDELAKE_BIN_DIR", Path.home() / ".cache/ridelake/target/release"))
KEY, SECRET = "RGWKEY", "RGWSECRET"  # the user scripts/start-rgw.sh creates
BURST_S = 0.02  # the pacer sends what is due every 20 ms
STATE_S = 0.2  # one STATE per 0.2 s of records
POLL_S = 0.5  # the reader lists the tables' logs every 0.5 s
P95_TARGET_S = 10.0
# RGW's OSD keeps every object in memory: room for the run's Parquet (about 95 bytes per record
# on short runs, snappy; 3x that), at least start-rgw.sh's default of 2 GiB.
MEMSTORE_BYTES_PER_RECORD = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=20_000, help="records per second")
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--flush-seconds", type=int, default=5, help="the destination's flush_interval_seconds")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (RGW logs, the destination's messages and stderr)")
    parser.add_argument("--json", type=Path, help="where the figures go (default bench-out/soak-<time>.json)")
    args = parser.parse_args()
    records = int(args.rate * args.minutes * 60)
    json_path = args.json or REPO / "bench-out" / time.strftime("soak-%Y%m%d-%H%M%S.json")
    work = Path(tempfile.mkdtemp(prefix="ridelake-soak-"))
    rgw_dir = work / "rgw"
    failed = True
    try:
        s3 = start_rgw(rgw_dir, records)
        figures = soak(work, s3, args, records)
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(figures, indent=1))
        print(f"\nfigures: {json_path}")
        failed = bool(figures["failures"])
    finally:
        subprocess.run([str(REPO / "scripts/stop-rgw.sh"), str(rgw_dir)], timeout=120)
        if args.keep or failed:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work)
    sys.exit(1 if failed else 0)


# ---------------------------------------------------------------------------------------------
# Ceph RGW


@dataclass
class S3:
    endpoint: str
    bucket: str = "lake"

    def client(self):
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                            region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3}))

    def storage_options(self) -> dict:
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_rgw(directory: Path, records: int) -> S3:
    if shutil.which("radosgw") is None:
        raise SystemExit("radosgw is not installed: run scripts/setup-test-env.sh")
    port, mon_port = free_port(), free_port()
    memstore = max(2 << 30, records * MEMSTORE_BYTES_PER_RECORD)
    print(f"starting Ceph RGW on port {port} (memory store {memstore / 2**30:.1f} GiB) …", file=sys.stderr)
    env = {**os.environ, "RIDELAKE_RGW_MEMSTORE_BYTES": str(memstore)}
    started = subprocess.run([str(REPO / "scripts/start-rgw.sh"), str(directory), str(port), str(mon_port)],
                             env=env, capture_output=True, text=True, timeout=180)
    if started.returncode != 0:
        raise SystemExit(f"start-rgw.sh failed:\n{started.stdout[-2000:]}{started.stderr[-2000:]}")
    s3 = S3(f"http://127.0.0.1:{port}")
    s3.client().create_bucket(Bucket=s3.bucket)
    return s3


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class SentState:
    records_before: int  # records sent before this state
    line: bytes  # as sent


@dataclass
class Pacer:
    """Forwards the generator's lines to the destination at `rate` records per second."""
    rate: int
    start: float = 0.0
    records: int = 0
    per_table: dict = field(default_factory=dict)
    states: list = field(default_factory=list)
    # (records sent, records per stream) after each burst, for the reader's freshness per table
    bursts: list = field(default_factory=list)
    # per burst: (seconds into the run, how far its write ended behind its last record's schedule)
    lags: list = field(default_factory=list)
    finished: float = 0.0
    eof: bool = False  # read the generator's output to its end

    def scheduled(self, count: int) -> float:
        """When the count-th record (1-based) is due."""
        return self.start + count / self.rate

    def run(self, source, sink, first: bytes) -> None:
        self.start = time.monotonic()
        try:
            self.forward(source, sink, first)
        finally:
            self.finished = time.monotonic()

    def forward(self, source, sink, first: bytes) -> None:
        pending = first  # a line read ahead, sent with the next burst
        max_burst = max(1, self.rate // 2)  # a pacer that fell behind catches up in half-second bursts
        while pending:
            now = time.monotonic()
            due = min(int((now - self.start) * self.rate) - self.records, max_burst)
            if due <= 0:
                time.sleep(BURST_S - (now - self.start) % BURST_S)
                continue
            lines, states, sent, per_table = [], [], 0, {}
            # `due` records, the states among them, and the states right after the last one (a
            # source emits its state as soon as the records before it are out).
            while pending and (sent < due or not pending.startswith(b'{"type":"RECORD"')):
                line, pending = pending, source.readline()
                lines.append(line)
                if line.startswith(b'{"type":"RECORD"'):
                    sent += 1
                    # The stream's name, found near the start without parsing the record.
                    at = line.find(b'"stream":"', 0, 300) + 10
                    stream = line[at:line.find(b'"', at)]
                    per_table[stream] = per_table.get(stream, 0) + 1
                elif b'"STATE"' in line:
                    states.append(SentState(self.records + sent, line))
            sink.write(b"".join(lines))
            sink.flush()
            done = time.monotonic()
            self.records += sent
            for stream, n in per_table.items():
                self.per_table[stream.decode()] = self.per_table.get(stream.decode(), 0) + n
            self.bursts.append((self.records, dict(self.per_table)))
            self.lags.append((done - self.start, done - self.scheduled(self.records)))
            self.states += states
        self.eof = True


def soak(work: Path, s3: S3, args, records: int) -> dict:
    catalog, config = work / "catalog.json", work / "config.json"
    storage = {"storage_type": "S3", "s3_bucket_name": s3.bucket, "s3_bucket_path": "bronze", "s3_endpoint": s3.endpoint,
               "access_key_id": KEY, "secret_access_key": SECRET}
    config.write_text(json.dumps({"storage": storage, "flush_interval_seconds": args.flush_seconds}))
    state_every = max(1, int(args.rate * STATE_S))
    # A user and ride population to change; the snapshot is simulated, not sent.
    gen_args = ["--users", str(max(1000, records // 200)), "--rides", str(max(10_000, records // 20)),
                "--changes", str(records), "--records", str(records), "--skip-snapshot", "true",
                "--state-every", str(state_every), "--catalog", str(catalog)]
    print(f"soak: {records:,} records at {args.rate:,}/s ({args.minutes:g} min), a state every {state_every:,} records, "
          f"flush_interval_seconds {args.flush_seconds}", file=sys.stderr)
    gen = subprocess.Popen([str(BIN / "ridelake-gen"), *gen_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           bufsize=1 << 20)
    dest = None
    dest_log = open(work / "destination.stderr", "wb")
    try:
        first = gen.stdout.readline()  # the catalog is written before the first line
        if not first:
            raise SystemExit(f"ridelake-gen wrote nothing:\n{gen.stderr.read().decode()[-2000:]}")
        tables = [(s["stream"]["namespace"], s["stream"]["name"]) for s in json.loads(catalog.read_text())["streams"]]
        dest = subprocess.Popen([str(BIN / "destination-delta-lake"), "write", "--config", str(config), "--catalog", str(catalog)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=dest_log)
        stop = threading.Event()
        echoes = Echoes(dest.stdout, work / "destination.messages")
        rss = RssSampler(dest.pid, stop)
        reader = LogReader(s3, [f"bronze/{ns}/{name}" for ns, name in tables], stop)
        threads = [threading.Thread(target=t.run, daemon=True) for t in (echoes, rss, reader)]
        for t in threads:
            t.start()
        pacer = Pacer(args.rate)
        try:
            pacer.run(gen.stdout, dest.stdin, first)
        except BrokenPipeError:
            pass  # the destination stopped early: reported below
        finally:
            for pipe in (dest.stdin, gen.stdout):  # end of input; a generator not yet done stops too
                try:
                    pipe.close()
                except BrokenPipeError:
                    pass
        # The rest is commits of what is left: give it a few minutes.
        print(f"{pacer.records:,} records sent in {pacer.finished - pacer.start:.0f} s; waiting for the destination …",
              file=sys.stderr)
        status, usage = wait(dest.pid, timeout=300)
        dest_done = time.monotonic()
        threads[0].join(30)
        time.sleep(2 * POLL_S)  # one more poll after the last commit
        stop.set()
        for t in threads[1:]:
            t.join(30)
        gen.wait(30)
    finally:
        for proc in (gen, dest):
            if proc is not None and proc.poll() is None:
                proc.kill()
        dest_log.close()
    exit_code = os.waitstatus_to_exitcode(status) if status is not None else None
    return report(args, records, s3, tables, pacer, echoes, rss, reader, exit_code, usage, dest_done, gen, work)


def wait(pid: int, timeout: float):
    """wait4() the destination (its CPU seconds come with it); kills it after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            _, status, usage = os.wait4(pid, 0)
            print("the destination did not finish within 5 minutes of its input's end: killed", file=sys.stderr)
            return None, usage
        time.sleep(0.05)


class Echoes:
    """Reads the destination's stdout: when each STATE came back, and any error it reported;
    its other messages (LOG, TRACE) go to `log`."""

    def __init__(self, stdout, log: Path):
        self.stdout, self.log, self.states, self.errors = stdout, log, [], []

    def run(self) -> None:
        with open(self.log, "wb") as log:
            for line in self.stdout:
                now = time.monotonic()
                if b'"type":"STATE"' in line:
                    self.states.append((now, line))
                    continue
                log.write(line)
                if b'"type":"TRACE"' in line and b'"ERROR"' in line:
                    self.errors.append(line.decode()[:2000])


class RssSampler:
    """The destination's resident memory every second, from /proc."""

    def __init__(self, pid: int, stop: threading.Event):
        self.pid, self.stop, self.samples = pid, stop, []

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.wait(1.0):
            try:
                with open(f"/proc/{self.pid}/status") as f:
                    kib = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            except (OSError, StopIteration):
                break  # exited
            self.samples.append((time.monotonic() - start, kib / 1024))


class LogReader:
    """A reader of the bronze tables over S3: lists each table's `_delta_log` every POLL_S and
    reads the commits it has not seen, noting when each became visible and the rows it added."""

    def __init__(self, s3: S3, prefixes: list[str], stop: threading.Event):
        self.s3, self.stop = s3, stop
        self.commits = {p: [] for p in prefixes}  # prefix -> [(version, seen at, rows added)]
        self.errors = 0

    def run(self) -> None:
        client = self.s3.client()
        while True:
            last = self.stop.is_set()
            for prefix, commits in self.commits.items():
                try:
                    self.poll(client, prefix, commits)
                except Exception:  # a slow or failed listing: next poll
                    self.errors += 1
            if last:
                return
            self.stop.wait(POLL_S)

    def poll(self, client, prefix: str, commits: list) -> None:
        log = f"{prefix}/_delta_log/"
        after = f"{log}{commits[-1][0]:020}.json" if commits else log
        found, token = [], None
        while True:
            page = client.list_objects_v2(Bucket=self.s3.bucket, Prefix=log, StartAfter=after,
                                          **({"ContinuationToken": token} if token else {}))
            found += [o["Key"] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                break
        seen = time.monotonic()
        names = sorted(k[len(log):] for k in found)
        for name in names:
            stem = name.removesuffix(".json")
            if len(stem) != 20 or not stem.isdigit() or name == stem:
                continue  # checkpoints, _last_checkpoint, temporary files
            body = client.get_object(Bucket=self.s3.bucket, Key=log + name)["Body"].read()
            rows = 0
            for line in body.splitlines():
                action = json.loads(line)
                if "add" in action and action["add"].get("stats"):
                    rows += json.loads(action["add"]["stats"]).get("numRecords", 0)
                elif "remove" in action:
                    rows = float("nan")  # not an append: row counts no longer follow
            commits.append((int(stem), seen, rows))


# ---------------------------------------------------------------------------------------------
# Figures


def freshness_points(emitted: list, covered: list, rate: int) -> tuple[list, int]:
    """Weighted freshness values. `emitted`: (records so far, when the last of them was emitted)
    breakpoints, records emitted evenly between two; `covered`: (records so far, when they were
    all committed), non-decreasing. Returns ([(seconds, records)], records never covered), in
    pieces of at most 10 ms of records."""
    step = max(1, rate // 100)
    points, ci = [], 0
    prev_n, prev_t = emitted[0]
    for n, t in emitted[1:]:
        pos = prev_n
        while pos < n:
            while ci < len(covered) and covered[ci][0] <= pos:
                ci += 1
            if ci == len(covered):
                return points, emitted[-1][0] - pos
            end = min(n, covered[ci][0], pos + step)
            mid = (pos + end) / 2
            when = prev_t + (mid - prev_n) / (n - prev_n) * (t - prev_t)
            points.append((covered[ci][1] - when, end - pos))
            pos = end
        prev_n, prev_t = n, t
    return points, 0


def percentiles(points: list) -> dict:
    if not points:
        return {}
    points = sorted(points)
    total = sum(w for _, w in points)
    out, acc, qs = {}, 0, [("p50", 0.50), ("p95", 0.95), ("p99", 0.99)]
    for value, weight in points:
        acc += weight
        while qs and acc >= qs[0][1] * total:
            out[qs.pop(0)[0]] = value
    out["max"] = points[-1][0]
    out["mean"] = sum(v * w for v, w in points) / total
    return out


def report(args, records, s3, tables, pacer, echoes, rss, reader, exit_code, usage, dest_done, gen, work) -> dict:
    failures = []
    if exit_code != 0:
        failures.append(f"destination exit code {exit_code}: {' '.join(echoes.errors)[:1000]}"
                        f"{(work / 'destination.stderr').read_text(errors='replace')[-2000:]}")
    if pacer.eof and gen.returncode != 0:  # (a generator cut short by a failed destination fails too)
        failures.append(f"ridelake-gen exit code {gen.returncode}")
    if pacer.eof and pacer.records != records:
        failures.append(f"ridelake-gen wrote {pacer.records:,} records, {records:,} asked for")

    # States: all back, in order, unchanged but for destinationStats.
    sent, back = pacer.states, echoes.states
    if len(back) != len(sent):
        failures.append(f"{len(sent)} states sent, {len(back)} echoed")
    previous = 0
    for i, (state, (_, echo)) in enumerate(zip(sent, back)):
        mine, theirs = json.loads(state.line)["state"], json.loads(echo)["state"]
        stats = theirs.pop("destinationStats", {})
        if mine != theirs or stats.get("recordCount") != state.records_before - previous:
            failures.append(f"state {i + 1} echoed as {echo[:300]!r}")
            break
        previous = state.records_before

    # Freshness: emitted on schedule; committed at the echo; visible when the reader saw it.
    schedule = [(0, pacer.start), (pacer.records, pacer.scheduled(pacer.records))]
    committed = [(s.records_before, t) for s, (t, _) in zip(sent, back)]
    fresh_commit, _ = freshness_points(schedule, committed, args.rate)
    fresh_visible, never_seen = [], 0
    for (ns, name), (prefix, commits) in zip(tables, reader.commits.items()):
        emitted = [(0, pacer.start)] + [(per.get(name, 0), pacer.scheduled(n)) for n, per in pacer.bursts]
        covered, rows = [], 0
        for _, seen, added in commits:
            rows += added
            covered.append((rows, seen))
        points, missing = freshness_points(emitted, covered, args.rate)
        fresh_visible += points
        never_seen += missing
    commit_p, visible_p = percentiles(fresh_commit), percentiles(fresh_visible)

    # Bronze as a reader finds it at the end.
    bronze, client = {}, s3.client()
    for (ns, name), prefix in zip(tables, reader.commits):
        table = DeltaTable(f"s3://{s3.bucket}/{prefix}", storage_options=s3.storage_options())
        objects = list_objects(client, s3.bucket, prefix + "/")
        data = [o for o in objects if "/_delta_log/" not in o["Key"]]
        referenced = table.file_uris()
        bronze[name] = {
            "rows": table.to_pyarrow_dataset().count_rows(), "sent": pacer.per_table.get(name, 0),
            "version": table.version(), "reader_saw_version": reader.commits[prefix][-1][0] if reader.commits[prefix] else None,
            "files": len(referenced), "objects": len(data), "data_mib": sum(o["Size"] for o in data) / 2**20,
            "log_objects": len(objects) - len(data),
        }
        if bronze[name]["rows"] != bronze[name]["sent"]:
            failures.append(f"{name}: {bronze[name]['rows']} rows in bronze, {bronze[name]['sent']} records sent")
    if never_seen:
        failures.append(f"{never_seen} records never seen by the reader polling the Delta log")

    # Memory by thirds of the run.
    mib = [m for _, m in rss.samples]
    third = max(1, len(mib) // 3)
    memory = {"min": min(mib, default=0), "median": statistics.median(mib) if mib else 0, "max": max(mib, default=0),
              "first_third": statistics.median(mib[:third]) if mib else 0,
              "middle_third": statistics.median(mib[third:2 * third] or mib) if mib else 0,
              "last_third": statistics.median(mib[-third:]) if mib else 0}
    # and its trend after the first third (warm-up): least squares, MiB per minute
    late = rss.samples[third:]
    if len(late) > 1:
        mean_t, mean_m = statistics.fmean(t for t, _ in late), statistics.fmean(m for _, m in late)
        var = sum((t - mean_t) ** 2 for t, _ in late)
        memory["slope_mib_per_min"] = 60 * sum((t - mean_t) * (m - mean_m) for t, m in late) / var if var else 0.0
    flat = memory["last_third"] <= memory["first_third"] * 1.10 + 16
    run_s = dest_done - pacer.start
    achieved = pacer.records / max(pacer.finished - pacer.start, 1e-9)
    lags = sorted(lag for _, lag in pacer.lags)
    worst = max(pacer.lags, key=lambda x: x[1], default=(0.0, 0.0))
    lag = {"p50": lags[len(lags) // 2] if lags else 0.0, "p99": lags[int(len(lags) * 0.99)] if lags else 0.0,
           "max": worst[1], "max_at_s": worst[0], "bursts_over_1s": sum(1 for x in lags if x > 1.0)}
    kept_up = achieved >= 0.99 * args.rate and lag["p99"] < 1.0
    cpu = usage.ru_utime + usage.ru_stime
    figures = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "commit": git_commit(),
        "rate": args.rate, "minutes": args.minutes, "flush_interval_seconds": args.flush_seconds,
        "records": pacer.records, "states": len(sent), "echoed": len(back), "cores": os.cpu_count(),
        "achieved_rate": achieved, "pacer_lag_s": lag, "pacer_kept_up": kept_up,
        "freshness_committed_s": commit_p, "freshness_visible_s": visible_p, "p95_target_s": P95_TARGET_S,
        "p95_met": bool(commit_p) and commit_p["p95"] < P95_TARGET_S,
        "rss_mib": memory, "rss_flat": flat, "rss_samples": rss.samples,
        "destination_cpu_s": cpu, "destination_peak_rss_mib": usage.ru_maxrss / 1024, "run_s": run_s,
        "finish_after_input_end_s": dest_done - pacer.finished,
        "commits": {name: b["version"] + 1 for name, b in bronze.items()}, "bronze": bronze,
        "reader_poll_errors": reader.errors, "failures": failures,
    }
    print_report(figures)
    return figures


def git_commit() -> str:
    described = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True, text=True)
    return described.stdout.strip()


def list_objects(client, bucket: str, prefix: str) -> list:
    objects, token = [], None
    while True:
        page = client.list_objects_v2(Bucket=bucket, Prefix=prefix, **({"ContinuationToken": token} if token else {}))
        objects += page.get("Contents", [])
        token = page.get("NextContinuationToken")
        if not token:
            return objects


def print_report(f: dict) -> None:
    print(f"\nsoak: {f['records']:,} records at {f['rate']:,}/s target ({f['minutes']:g} min) into Ceph RGW, "
          f"flush_interval_seconds {f['flush_interval_seconds']}, {f['states']:,} states, {f['cores']} cores")
    lag = f["pacer_lag_s"]
    print(f"pacer: {f['achieved_rate']:,.0f} records/s achieved ({'kept up' if f['pacer_kept_up'] else 'FELL BEHIND'}); "
          f"lag behind schedule p50 {lag['p50']:.3f} s, p99 {lag['p99']:.3f} s, max {lag['max']:.2f} s "
          f"({lag['max_at_s']:.0f} s into the run), {lag['bursts_over_1s']} bursts over 1 s")
    print(f"\n{'freshness (s)':<38}{'p50':>7}{'p95':>7}{'p99':>7}{'max':>7}")
    for label, key in (("committed (STATE echoed)", "freshness_committed_s"),
                       ("visible (reader polling every 0.5 s)", "freshness_visible_s")):
        p = f[key]
        if p:
            print(f"{label:<38}{p['p50']:>7.2f}{p['p95']:>7.2f}{p['p99']:>7.2f}{p['max']:>7.2f}")
    p95 = f["freshness_committed_s"].get("p95")
    print(f"p95 target < {f['p95_target_s']:g} s: {'met' if f['p95_met'] else 'MISSED'}"
          + (f" ({p95:.2f} s)" if p95 is not None else ""))
    m = f["rss_mib"]
    print(f"\ndestination RSS MiB: min {m['min']:.0f}, median {m['median']:.0f}, max {m['max']:.0f}; by thirds "
          f"{m['first_third']:.0f} / {m['middle_third']:.0f} / {m['last_third']:.0f} ({'flat' if f['rss_flat'] else 'GROWING'}); "
          f"peak (wait4) {f['destination_peak_rss_mib']:.0f}"
          + (f"; trend after the first third {m['slope_mib_per_min']:+.1f} MiB/min" if "slope_mib_per_min" in m else ""))
    samples = f["rss_samples"]
    if samples:
        marks = [samples[min(len(samples) - 1, i * len(samples) // 10)] for i in range(10)] + [samples[-1]]
        print("over time: " + "  ".join(f"{t:.0f}s {v:.0f}" for t, v in marks))
    print(f"destination CPU: {f['destination_cpu_s']:.0f} s over {f['run_s']:.0f} s "
          f"({100 * f['destination_cpu_s'] / f['run_s']:.0f}% of a core); "
          f"last commits {f['finish_after_input_end_s']:.1f} s after the input ended")
    print(f"\n{'table':<10}{'sent':>12}{'rows':>12}{'commits':>9}{'files':>7}{'objects':>9}{'MiB':>8}{'log objects':>13}")
    for name, b in f["bronze"].items():
        print(f"{name:<10}{b['sent']:>12,}{b['rows']:>12,}{b['version'] + 1:>9}{b['files']:>7}{b['objects']:>9}"
              f"{b['data_mib']:>8.0f}{b['log_objects']:>13}")
    print(f"\nstates: {f['states']} sent, {f['echoed']} echoed")
    for failure in f["failures"]:
        print(f"FAILED: {failure}")
    if not f["failures"]:
        print("checks passed: every state echoed in order, rows per table = records sent")


if __name__ == "__main__":
    main()
