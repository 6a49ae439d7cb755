"""Silver and gold benchmark: ridelake vs an analyst-style baseline (polars + deltalake MERGE).

usage: python bench/bench_lakehouse.py [--rides 10000000] [--changes 5000000] [--users 500000] [--prepared DIR] [--repeat 3]
                                       [--uuid-keys]

With `--uuid-keys`, every key (users' and rides' ids, a ride's customer and driver) is a UUID text,
as an application keyed by `CHAR(36)` UUIDs sends it (the generator's `--uuid-keys`): silver's keys
are then text, for ridelake and the baseline alike.

1. bronze: the generator's snapshot (RIDES rides, USERS users) goes through destination-delta-lake;
   ridelake builds silver and gold from it, and the baseline writes its own silver from the same
   snapshot (neither is timed);
2. CDC: the generator's next CHANGES binlog changes go to bronze as a second sync;
3. timed, each in its own process (wait4 rusage), after the kernel wrote back earlier writes:
   ridelake's silver update, ridelake's gold update, and the baseline's MERGE of the same changes;
   REPEAT rounds on fresh copies of the lake, medians reported (the machines here are noisy);
4. checked: both silver `rides` tables hold the same (id, status) pairs.

With `--prepared DIR`, steps 1-2 are done once and their result kept in DIR (for the same sizes);
later runs copy it and time step 3 only, so that a change can be measured again in minutes.

The data has no bad nulls, no late users, no user deletes and no type changes (each moves rides to
pending in ridelake, which the baseline does not model), so that both jobs must produce the same
rides; it keeps the rest of the generator's realism: deletes, re-inserts of a deleted id, verbatim
duplicates, transactions sharing a change time, one `emitted_at` per sync, source-mysql's catalog types.
Bytes rewritten = sizes of the files the update commit removed, read from each table's Delta log.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from deltalake import DeltaTable

from measure import measure

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("RIDELAKE_BIN_DIR", Path.home() / ".cache/ridelake/target/release"))


def sync(work: Path, lake: Path, gen_args: list[str]) -> None:
    catalog = work / "catalog.json"
    config = work / "config.json"
    config.write_text(json.dumps({"storage": {"storage_type": "Local", "local_path": str(lake / "bronze")}}))
    # The catalog first (the destination reads it at start), then the messages.
    keyed = ["--uuid-keys", "true"] if "--uuid-keys" in gen_args else []
    subprocess.run([str(BIN / "ridelake-gen"), "--catalog", str(catalog), "--users", "0", "--rides", "0", "--changes", "0",
                    *keyed, "--out", os.devnull], check=True, capture_output=True)
    gen = subprocess.Popen([str(BIN / "ridelake-gen"), *gen_args], stdout=subprocess.PIPE)
    dest = subprocess.run([str(BIN / "destination-delta-lake"), "write", "--config", str(config), "--catalog", str(catalog)],
                          stdin=gen.stdout, stdout=subprocess.DEVNULL, check=True)
    gen.wait()


def versions(tables: list[Path]) -> dict[Path, int]:
    return {t: DeltaTable(str(t)).version() if (t / "_delta_log").exists() else -1 for t in tables}


def bytes_rewritten(before: dict[Path, int]) -> int:
    """Bytes of the files removed by the commits made since `before` (table -> version)."""
    total = 0
    for table, version in before.items():
        for log in sorted((table / "_delta_log").glob("*.json")):
            if int(log.stem) > version:
                for line in log.read_text().splitlines():
                    action = json.loads(line)
                    if "remove" in action:
                        total += action["remove"].get("size") or 0
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rides", type=int, default=10_000_000)
    parser.add_argument("--changes", type=int, default=5_000_000)
    parser.add_argument("--users", type=int, default=500_000)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--prepared", type=Path, help="keep (or reuse) the lake as it is before the timed updates here")
    parser.add_argument("--repeat", type=int, default=3, help="timed rounds, each on a fresh copy; medians are reported")
    parser.add_argument("--uuid-keys", action="store_true", help="keys as UUID text (CHAR(36) at the source) instead of integers")
    parser.add_argument("--prepare-only", action="store_true", help="with --prepared: prepare the lake and stop (time it later)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ridelake-bench-lake-"))
    lake = work / "lake"
    base = ["--users", str(args.users), "--rides", str(args.rides), "--bad-null-rate", "0", "--late-user-rate", "0",
            "--user-delete-rate", "0", "--type-change-rate", "0", "--state-every", "100000", "--seed", "11"]
    if args.uuid_keys:
        base += ["--uuid-keys", "true"]
    py = sys.executable
    # The generator's arguments are part of the key: a lake prepared from other data is not reused.
    sizes = {"rides": args.rides, "changes": args.changes, "users": args.users, "generator": base, "since": "bronze version"}
    marker = args.prepared / "prepared.json" if args.prepared else None
    if marker and marker.exists() and json.loads(marker.read_text())["sizes"] == sizes:
        print(f"reusing the prepared lake in {args.prepared} …", file=sys.stderr)
        prepared = json.loads(marker.read_text())
        shutil.rmtree(work)
        shutil.copytree(args.prepared, work, ignore=shutil.ignore_patterns("prepared.json"))
        time_updates(args, work, lake, prepared["since"], prepared["initial"], prepared["initial_baseline"])
        return
    print(f"bronze snapshot: {args.rides:,} rides, {args.users:,} users …", file=sys.stderr)
    sync(work, lake, [*base, "--changes", "0"])
    print("initial silver and gold (not timed) …", file=sys.stderr)
    initial = measure([py, "-c", f"import ridelake; ridelake.build_silver({str(lake)!r}); ridelake.build_gold({str(lake)!r})"])
    baseline_silver = work / "baseline-silver-rides"
    # In a child process: a child inherits its parent's peak-RSS mark (Linux copies it at fork),
    # so the parent must never hold big frames, or every measurement below would show it.
    initial_baseline = measure([py, "-c", f"""
import polars as pl
snapshot = (pl.read_delta({str(lake / "bronze/ridehail/rides")!r})
            .unique(subset="id", keep="last", maintain_order=True)  # the snapshot's at-least-once duplicates
            .with_columns(pl.col("requested_at").dt.year().cast(pl.Int32).alias("year"),
                          pl.col("requested_at").dt.month().cast(pl.Int32).alias("month"),
                          pl.col("requested_at").dt.day().cast(pl.Int32).alias("day"))
            .drop(["_airbyte_meta", "_airbyte_rescued_data", "_airbyte_raw_id"]))
from deltalake import DeltaTable
print(DeltaTable({str(lake / "bronze/ridehail/rides")!r}).version())  # the CDC sync's files come after it
snapshot.write_delta({str(baseline_silver)!r}, delta_write_options={{"partition_by": ["year", "month", "day"]}})
"""])
    since = int(initial_baseline["stdout"].strip().splitlines()[-1])
    print(f"bronze CDC: {args.changes:,} changes …", file=sys.stderr)
    sync(work, lake, [*base, "--changes", str(args.changes), "--skip-snapshot", "true"])
    if args.prepared:
        shutil.rmtree(args.prepared, ignore_errors=True)
        shutil.copytree(work, args.prepared)
        (args.prepared / "prepared.json").write_text(json.dumps(
            {"sizes": sizes, "since": since, "initial": initial, "initial_baseline": initial_baseline}))
    if args.prepare_only:
        print(f"prepared in {args.prepared}", file=sys.stderr)
        shutil.rmtree(work)
        return
    time_updates(args, work, lake, since, initial, initial_baseline)


def settle() -> None:
    """Writes dirty pages back before a timed job, so that no job pays for an earlier one's writes."""
    os.sync()


def one_round(work: Path, lake: Path, since: int) -> tuple[dict, dict, dict, dict]:
    """Times ridelake's silver and gold updates and the baseline's MERGE once; checks the outputs."""
    py = sys.executable
    baseline_silver = work / "baseline-silver-rides"
    silver = ["users", "rides", "rides_pending", "rides_deleted", "quarantine"]
    silver_before = versions([lake / "silver" / t for t in silver])
    baseline_before = versions([baseline_silver])
    settle()
    ours = measure([py, "-c", f"import ridelake, json; print(json.dumps(ridelake.build_silver({str(lake)!r})))"])
    report = json.loads(ours["stdout"].strip().splitlines()[-1])
    ours["bytes_rewritten"] = bytes_rewritten(silver_before)
    settle()
    gold = measure([py, "-c", f"import ridelake, json; print(json.dumps(ridelake.build_gold({str(lake)!r})))"])
    settle()
    base_run = measure([py, str(REPO / "bench/baseline_silver.py"), str(lake / "bronze/ridehail/rides"), str(baseline_silver), str(since)])
    base_run["bytes_rewritten"] = bytes_rewritten(baseline_before)
    # Same output: the same rides with the same status (checked in a child, for the same reason).
    measure([py, "-c", f"""
import polars as pl
mine = pl.read_delta({str(lake / "silver/rides")!r}).select("id", "status").sort("id")
theirs = pl.read_delta({str(baseline_silver)!r}).select("id", "status").sort("id")
assert mine.equals(theirs), f"silver differs: ours {{mine.height}} rows, baseline {{theirs.height}} rows"
"""])
    return ours, gold, base_run, report


def median_of(runs: list[dict]) -> dict:
    return {key: statistics.median(r[key] for r in runs) for key in ("wall_s", "cpu_s", "peak_rss_mib", "bytes_rewritten")
            if key in runs[0]}


def time_updates(args, work: Path, lake: Path, since: int, initial: dict, initial_baseline: dict) -> None:
    print(f"timing ridelake silver, ridelake gold, baseline MERGE ({args.repeat} round(s)) …", file=sys.stderr)
    pristine = work.with_name(work.name + "-pristine") if args.repeat > 1 else None
    if pristine:
        shutil.copytree(work, pristine)
    rounds = []
    for number in range(args.repeat):
        if number > 0 and pristine:
            shutil.rmtree(work)
            shutil.copytree(pristine, work)
        rounds.append(one_round(work, lake, since))
        ours, gold, base_run, _ = rounds[-1]
        print(f"  round {number + 1}: ridelake silver {ours['wall_s']:.1f} s, gold {gold['wall_s']:.1f} s, "
              f"baseline {base_run['wall_s']:.1f} s", file=sys.stderr)
    ours, gold, base_run = (median_of([r[i] for r in rounds]) for i in range(3))
    report = rounds[-1][3]
    changes = report["rows_read"]
    print(f"\nsilver benchmark: {args.rides:,} rides in silver{' (UUID keys)' if args.uuid_keys else ''}, update with {changes:,} CDC rows, {os.cpu_count()} cores"
          f"{f', median of {args.repeat} rounds' if args.repeat > 1 else ''}")
    print(f"(initial silver + gold from the snapshot, not compared: {initial['wall_s']:.1f} s, peak RSS {initial['peak_rss_mib']:,.0f} MiB;"
          f" the baseline's initial load: {initial_baseline['wall_s']:.1f} s, {initial_baseline['peak_rss_mib']:,.0f} MiB)")
    print("(ridelake's update also applies users, integrity, pending rides, tombstones and quarantine; the baseline merges rides only)")
    print(f"{'job':<30}{'rows/s':>12}{'wall s':>9}{'CPU s':>9}{'peak RSS MiB':>14}{'rewritten MiB':>15}")
    for name, r in (("ridelake silver update", ours), ("baseline MERGE", base_run)):
        print(f"{name:<30}{changes / r['wall_s']:>12,.0f}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}{r['peak_rss_mib']:>14,.0f}"
              f"{r['bytes_rewritten'] / 2**20:>15,.0f}")
    print(f"{'ridelake gold update':<30}{changes / gold['wall_s']:>12,.0f}{gold['wall_s']:>9.1f}{gold['cpu_s']:>9.1f}{gold['peak_rss_mib']:>14,.0f}{'':>15}")
    print(f"\nratio baseline/ours: {base_run['wall_s'] / ours['wall_s']:.1f}x faster, {base_run['cpu_s'] / ours['cpu_s']:.1f}x less CPU, "
          f"{base_run['peak_rss_mib'] / ours['peak_rss_mib']:.1f}x less memory")
    print(f"silver steps (last round): {', '.join(f'{step} {seconds:.2f} s' for step, seconds in report['step_seconds'])}")
    if not args.keep:
        shutil.rmtree(work)
    if pristine:
        shutil.rmtree(pristine)


if __name__ == "__main__":
    main()
