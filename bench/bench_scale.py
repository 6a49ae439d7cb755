"""Scale benchmark: how silver's rebuild (the initial build) grows with the table, with and without
a memory budget.

usage: python bench/bench_scale.py [--rides 1000000,10000000] [--budget 2GiB] [--changes-per-ride 0.5]
                                   [--whole-up-to 20000000] [--work DIR] [--keep]

For each size: the generator's snapshot of RIDES rides (and RIDES/20 users), then CHANGES-PER-RIDE ×
RIDES binlog changes, go through destination-delta-lake into bronze (not timed). Then, each in its
own process (wait4 rusage), on the same bronze:
1. ridelake's rebuild under the memory budget (it picks its slices: ranges of the ride id);
2. ridelake's rebuild in one slice (no budget): the baseline of the same code;
3. a polars + deltalake peer: the latest change per ride id (by source-mysql's cursor, deletes
   dropped), partitioned and written as Delta. It applies no rules and no integrity; the data has
   no bad nulls and no late users, so that its rides must be ours.
Checked: the three silver `rides` tables hold the same (id, status) pairs. Sizes above
--whole-up-to run only the budgeted rebuild (50 M rides whole would need ~75 GiB). Printed per size:
changes/s, wall, CPU-s, peak RSS, slices; then the slope of time and memory over sizes.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lakehouse import sync  # noqa: E402
from measure import measure  # noqa: E402

PEER = """
import sys
import polars as pl
bronze, out = sys.argv[1], sys.argv[2]
rides = (pl.scan_delta(bronze)
         .with_row_index("_row")
         # The latest change per ride: by the source's cursor (source-mysql's counter), then arrival.
         .sort(["_ab_cdc_cursor", "_row"], nulls_last=False)
         .unique(subset="id", keep="last", maintain_order=True)
         .filter(pl.col("_ab_cdc_deleted_at").is_null())
         .with_columns(pl.col("requested_at").dt.year().cast(pl.Int32).alias("year"),
                       pl.col("requested_at").dt.month().cast(pl.Int32).alias("month"),
                       pl.col("requested_at").dt.day().cast(pl.Int32).alias("day"))
         .drop(["_airbyte_meta", "_airbyte_rescued_data", "_airbyte_raw_id", "_row"], strict=False)
         .collect())
rides.write_delta(out, mode="overwrite", delta_write_options={"partition_by": ["year", "month", "day"]})
print(rides.height)
"""

CHECK = """
import sys
import polars as pl
frames = [pl.read_delta(p).select("id", "status").sort("id") for p in sys.argv[1:]]
for path, frame in zip(sys.argv[2:], frames[1:]):
    assert frame.equals(frames[0]), f"{path}: {frame.height} rides, {sys.argv[1]}: {frames[0].height}"
print(frames[0].height)
"""


def rebuild(lake: Path, **kwargs) -> dict:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    run = measure([sys.executable, "-c", f"import ridelake, json; print(json.dumps(ridelake.build_silver({str(lake)!r}, rebuild=True, {args})))"])
    run["report"] = json.loads(run["stdout"].strip().splitlines()[-1])
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rides", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--budget", default="2GiB")
    parser.add_argument("--changes-per-ride", type=float, default=0.5)
    parser.add_argument("--whole-up-to", type=int, default=20_000_000,
                        help="sizes above this run only the budgeted rebuild (a whole one would not fit in memory)")
    parser.add_argument("--work", type=Path, help="where the lakes go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ridelake-scale-", dir=args.work))
    rows = []
    for rides in [int(s) for s in args.rides.split(",")]:
        users, changes = max(rides // 20, 100), int(rides * args.changes_per_ride)
        lake = work / f"lake-{rides}"
        base = ["--users", str(users), "--rides", str(rides), "--bad-null-rate", "0", "--late-user-rate", "0",
                "--user-delete-rate", "0", "--type-change-rate", "0", "--state-every", "1000000", "--seed", "7"]
        print(f"bronze: {rides:,} rides, {users:,} users, then {changes:,} changes …", file=sys.stderr)
        sync(work, lake, [*base, "--changes", "0"])
        if changes:
            sync(work, lake, [*base, "--changes", str(changes), "--skip-snapshot", "true"])
        os.sync()
        print(f"  rebuild under {args.budget} …", file=sys.stderr)
        budgeted = rebuild(lake, memory_budget=args.budget)
        budgeted_rides = work / f"rides-budgeted-{rides}"
        shutil.copytree(lake / "silver/rides", budgeted_rides)
        os.sync()
        whole = peer = None
        if rides <= args.whole_up_to:
            print("  rebuild in one slice …", file=sys.stderr)
            whole = rebuild(lake, slices=1)
            os.sync()
            print("  polars + deltalake peer …", file=sys.stderr)
            peer_out = work / f"peer-rides-{rides}"
            peer = measure([sys.executable, "-c", PEER, str(lake / "bronze/ridehail/rides"), str(peer_out)])
            published = int(measure([sys.executable, "-c", CHECK, str(lake / "silver/rides"), str(budgeted_rides), str(peer_out)])["stdout"].strip())
            shutil.rmtree(peer_out)
        else:
            published = budgeted["report"]["rides_upserted"]
        read = budgeted["report"]["rides_read"]
        rows.append((rides, read, published, budgeted, whole, peer))
        shutil.rmtree(budgeted_rides)
        if not args.keep:
            shutil.rmtree(lake)
    print(f"\nscale benchmark: silver rebuild (initial build) of the generator's rides, budget {args.budget}, {os.cpu_count()} cores")
    print(f"{'rides':>12}{'changes':>12}{'job':>26}{'slices':>8}{'changes/s':>12}{'wall s':>9}{'CPU s':>9}{'peak RSS MiB':>14}")
    for rides, read, published, budgeted, whole, peer in rows:
        runs = [("ridelake, budget", budgeted, budgeted["report"]["slices"])]
        if whole and peer:
            runs += [("ridelake, one slice", whole, whole["report"]["slices"]), ("polars+deltalake peer", peer, "")]
        for name, run, slices in runs:
            print(f"{rides:>12,}{read:>12,}{name:>26}{slices:>8}{read / run['wall_s']:>12,.0f}{run['wall_s']:>9.1f}"
                  f"{run['cpu_s']:>9.1f}{run['peak_rss_mib']:>14,.0f}")
        if whole and peer:
            print(f"{'':>12}{'':>12}{'ratio':>26}{'':>8}  budget/one slice: {budgeted['wall_s'] / whole['wall_s']:.2f}x time, "
                  f"{budgeted['peak_rss_mib'] / whole['peak_rss_mib']:.2f}x memory; one slice/peer: {whole['wall_s'] / peer['wall_s']:.2f}x time "
                  f"({published:,} rides published, the same in all three)")
        else:
            print(f"{'':>12}{'':>12}{'':>26}{'':>8}  ({published:,} rides published; too large to rebuild whole here)")
    per = lambda run, c: run["wall_s"] / c * 1e6  # noqa: E731
    if len(rows) >= 2:
        (r0, c0, _, b0, _, _), (r1, c1, _, b1, _, _) = rows[0], rows[-1]
        print(f"\nslope {r0:,} -> {r1:,} rides, budgeted: {per(b0, c0):.2f} -> {per(b1, c1):.2f} µs per change, "
              f"peak RSS {b0['peak_rss_mib']:,.0f} -> {b1['peak_rss_mib']:,.0f} MiB")
        whole_rows = [r for r in rows if r[4]]
        if len(whole_rows) >= 2:
            (r0, c0, _, _, w0, _), (r1, c1, _, _, w1, _) = whole_rows[0], whole_rows[-1]
            print(f"slope {r0:,} -> {r1:,} rides, one slice: {per(w0, c0):.2f} -> {per(w1, c1):.2f} µs per change, "
                  f"peak RSS {w0['peak_rss_mib']:,.0f} -> {w1['peak_rss_mib']:,.0f} MiB")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
