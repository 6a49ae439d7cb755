"""The main job: generated ride-hailing CDC -> bronze (destination-delta-lake) -> silver -> gold,
then a summary on stdout and an HTML report.

usage: run_pipeline.py [--lake DIR|s3://bucket/prefix] [--records N] [--seed S] [--report FILE]
                       [--s3-endpoint URL] [--s3-region R] [--only-bronze]

Every run sends N new records. The first run of a lake sends the generator's snapshot and its first
changes; a later run continues the same history where the previous one stopped (the generator's
position is kept in the lake, in `_ridelake_job/generator.json`), so silver and gold grow
incrementally. S3 credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import ridelake

BIN = Path(os.environ.get("RIDELAKE_BIN_DIR", Path.home() / ".cache/ridelake/target/release"))
NAMESPACE = "ridehail"
JOB_STATE = "_ridelake_job/generator.json"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Lake:
    """Where the lake lives, and the settings each component needs to reach it."""

    def __init__(self, uri: str, endpoint: str | None, region: str) -> None:
        self.uri = uri.rstrip("/")
        self.is_s3 = uri.startswith("s3://")
        if not self.is_s3:
            self.uri = str(Path(uri).resolve())
            return
        self.bucket, _, self.prefix = self.uri[len("s3://"):].partition("/")
        self.endpoint, self.region = endpoint, region
        self.key = os.environ.get("AWS_ACCESS_KEY_ID")
        self.secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not (self.key and self.secret):
            raise SystemExit("an s3:// lake needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment")

    def destination_config(self) -> dict:
        if not self.is_s3:
            return {"storage": {"storage_type": "Local", "local_path": f"{self.uri}/bronze"}, "flush_interval_seconds": 5}
        storage = {"storage_type": "S3", "s3_bucket_name": self.bucket, "s3_bucket_path": f"{self.prefix}/bronze".lstrip("/"),
                   "s3_bucket_region": self.region, "access_key_id": self.key, "secret_access_key": self.secret}
        if self.endpoint:
            storage["s3_endpoint"] = self.endpoint
        return {"storage": storage, "flush_interval_seconds": 5}

    def storage_options(self) -> dict | None:
        if not self.is_s3:
            return None
        options = {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret, "AWS_REGION": self.region}
        if self.endpoint:
            options |= {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true"}
        return options

    def _s3(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint or None, aws_access_key_id=self.key,
                            aws_secret_access_key=self.secret, region_name=self.region,
                            config=Config(s3={"addressing_style": "path"}))

    def _state_key(self) -> str:
        return f"{self.prefix}/{JOB_STATE}".lstrip("/")

    def read_job_state(self) -> dict | None:
        if not self.is_s3:
            path = Path(self.uri, JOB_STATE)
            return json.loads(path.read_text()) if path.exists() else None
        s3 = self._s3()
        try:
            return json.loads(s3.get_object(Bucket=self.bucket, Key=self._state_key())["Body"].read())
        except s3.exceptions.NoSuchKey:
            return None

    def write_job_state(self, state: dict) -> None:
        text = json.dumps(state, indent=1)
        if not self.is_s3:
            path = Path(self.uri, JOB_STATE)
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            partial.write_text(text)
            partial.replace(path)
            return
        self._s3().put_object(Bucket=self.bucket, Key=self._state_key(), Body=text.encode())


def send_to_bronze(lake: Lake, seed: int, users: int, rides: int, already: int, records: int) -> dict:
    """Generator | destination-delta-lake, with a progress line; returns what the destination committed."""
    with tempfile.TemporaryDirectory() as tmp:
        catalog, config = Path(tmp, "catalog.json"), Path(tmp, "config.json")
        config.write_text(json.dumps(lake.destination_config()))
        subprocess.run([str(BIN / "ridelake-gen"), "--catalog", str(catalog), "--users", "0", "--rides", "0", "--changes", "0",
                        "--out", os.devnull], check=True, capture_output=True)
        gen = subprocess.Popen(
            [str(BIN / "ridelake-gen"), "--seed", str(seed), "--users", str(users), "--rides", str(rides),
             "--changes", str(10**15), "--records", str(already + records), "--skip-records", str(already),
             "--state-every", str(max(1000, records // 50))],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        dest = subprocess.Popen([str(BIN / "destination-delta-lake"), "write", "--config", str(config), "--catalog", str(catalog)],
                                stdin=gen.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert gen.stdout is not None and dest.stdout is not None
        gen.stdout.close()  # the destination owns the pipe now
        dest_err: list[str] = []
        threading.Thread(target=lambda: dest_err.extend(dest.stderr), daemon=True).start()
        committed = states = 0
        errors: list[str] = []
        last = 0.0
        for line in dest.stdout:
            message = json.loads(line)
            if message.get("type") == "STATE":
                states += 1
                committed += int(message["state"].get("destinationStats", {}).get("recordCount", 0))
            elif message.get("type") == "TRACE" and message["trace"].get("type") == "ERROR":
                errors.append(message["trace"]["error"]["message"])
            elif message.get("type") == "LOG" and message["log"].get("level") in ("WARN", "ERROR", "FATAL"):
                print(f"\n  {message['log']['level']}: {message['log']['message']}", file=sys.stderr, flush=True)
            if time.monotonic() - last > 1:
                last = time.monotonic()
                print(f"\r  bronze: {committed:,} / {records:,} records committed ({committed * 100 // max(records, 1)}%)",
                      end="", file=sys.stderr, flush=True)
        dest_rc, gen_rc = dest.wait(), gen.wait()
        print(f"\r  bronze: {committed:,} / {records:,} records committed in {states} commits", file=sys.stderr, flush=True)
        if dest_rc != 0 or gen_rc != 0 or errors:
            detail = "; ".join(errors) or "".join(dest_err)[-2000:] or (gen.stderr.read().decode()[-2000:] if gen.stderr else "")
            raise SystemExit(f"the bronze sync failed (destination exit {dest_rc}, generator exit {gen_rc}): {detail}")
        return {"records": committed, "states": states}


def timed(label: str, step):
    """Runs one ridelake call, showing that it is under way and how long it took."""
    done = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while not done.wait(1):
            print(f"\r  {label} … {time.monotonic() - started:.0f} s", end="", file=sys.stderr, flush=True)

    threading.Thread(target=tick, daemon=True).start()
    try:
        result = step()
    finally:
        done.set()
    print(f"\r  {label}: done in {time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
    return result


def print_summary(lake: Lake, silver: dict, gold: dict, summary: dict, report: Path) -> None:
    rows = {(t["layer"], t["table"]): t["rows"] or 0 for t in summary["tables"]}
    print(f"\nridelake lake {lake.uri}")
    print(f"  bronze   users {rows['bronze', 'users']:>10,}   rides {rows['bronze', 'rides']:>10,}   (every change as received)")
    print(f"  silver   users {rows['silver', 'users']:>10,}   rides {rows['silver', 'rides']:>10,}   "
          f"deleted rides {rows['silver', 'rides_deleted']:,}")
    print(f"  gold     driver_stats {rows['gold', 'driver_stats']:,}   customer_totals {rows['gold', 'customer_totals']:,}   "
          f"daily_city_kpis {rows['gold', 'daily_city_kpis']:,}   monthly_distance {rows['gold', 'monthly_distance']:,}")
    print(f"  pending rides {summary['pending_rides']:,} (waiting for their users)   quarantined changes {summary['quarantined']:,}")
    print(f"  this run: {silver['rows_read']:,} bronze rows read, {silver['rides_upserted']:,} rides and "
          f"{silver['users_upserted']:,} users upserted, {silver['rides_deleted']:,} rides deleted, "
          f"{silver['released']:,} released from pending; gold recomputed {gold['days_recomputed']} day(s)")
    print("\n  top drivers (completed rides)")
    for d in summary["top_drivers"][:5]:
        rating = "n/a" if d["mean_rating"] is None else f"{d['mean_rating']:.2f}"
        print(f"    driver {d['driver_id']:>8}  {d['completed']:>5} completed  {d['distance_km']:>9,.1f} km  rating {rating}")
    print("\n  latest months")
    for m in summary["months"][-3:]:
        print(f"    {m['month']}  {m['rides']:>8,} rides  {m['completed']:>8,} completed  {m['distance_km']:>12,.1f} km")
    print(f"\n  report: {report}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lake", default="lake", help="a folder (default ./lake) or s3://bucket/prefix")
    parser.add_argument("--records", type=int, default=200_000, help="new records this run (default 200000)")
    parser.add_argument("--seed", type=int, default=42, help="generator seed of a new lake (a lake keeps its own)")
    parser.add_argument("--report", help="HTML report path (default <lake>/report.html, or ./ridelake-report.html for S3)")
    parser.add_argument("--s3-endpoint", default=os.environ.get("AWS_ENDPOINT_URL"), help="MinIO/Ceph URL (default $AWS_ENDPOINT_URL)")
    parser.add_argument("--s3-region", default=os.environ.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--only-bronze", action="store_true", help="stop after the bronze sync")
    args = parser.parse_args()
    if args.records <= 0:
        parser.error("--records must be positive")
    lake = Lake(args.lake, args.s3_endpoint, args.s3_region)
    state = lake.read_job_state()
    if state is None:
        state = {"seed": args.seed, "users": max(args.records // 20, 10), "rides": args.records * 9 // 20, "records_sent": 0, "runs": 0}
        log(f"== new lake {lake.uri}: seed {state['seed']}, snapshot of {state['users']:,} users and {state['rides']:,} rides")
    else:
        log(f"== continuing lake {lake.uri} (seed {state['seed']}) after {state['records_sent']:,} records, run {state['runs'] + 1}")
    log(f"== 1/4 bronze: {args.records:,} records through destination-delta-lake")
    sent = send_to_bronze(lake, state["seed"], state["users"], state["rides"], state["records_sent"], args.records)
    state["records_sent"] += args.records
    state["runs"] += 1
    lake.write_job_state(state)
    if args.only_bronze:
        log(f"bronze holds the first {state['records_sent']:,} records of seed {state['seed']} ({sent['states']} commits this run)")
        return
    options = lake.storage_options()
    log("== 2/4 silver: applying the new bronze versions")
    silver = timed("silver", lambda: ridelake.build_silver(lake.uri, namespace=NAMESPACE, storage_options=options))
    log("== 3/4 gold: recomputing the days that changed")
    gold = timed("gold", lambda: ridelake.build_gold(lake.uri, namespace=NAMESPACE, storage_options=options))
    report = Path(args.report) if args.report else (Path("ridelake-report.html") if lake.is_s3 else Path(lake.uri) / "report.html")
    log("== 4/4 report")
    summary = timed("report", lambda: ridelake.write_report(lake.uri, report, namespace=NAMESPACE, storage_options=options,
                                                             title=f"ridelake: {lake.uri}"))
    print_summary(lake, silver, gold, summary, report.resolve())


if __name__ == "__main__":
    main()
