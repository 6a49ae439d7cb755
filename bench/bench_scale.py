"""Scale benchmark: how silver's rebuild (the initial build) grows with the table, with and without
a memory budget.

usage: python bench/bench_scale.py [--rides 1000000,10000000] [--budget 2GiB] [--changes-per-ride 0.5]
                                   [--whole-up-to 20000000] [--ray-nodes 1,2] [--gold]
                                   [--update-changes-per-ride 0.5] [--work DIR] [--keep]

For each size: the generator's snapshot of RIDES rides (and RIDES/20 users), then CHANGES-PER-RIDE ×
RIDES binlog changes, go through destination-delta-lake into bronze (not timed). Then, each in its
own process (wait4 rusage), on the same bronze:
1. ridelake's rebuild under the memory budget (it picks its slices: ranges of the ride id);
2. ridelake's rebuild in one slice (no budget): the baseline of the same code;
3. a polars + deltalake peer: the latest change per ride id (by source-mysql's cursor, deletes
   dropped), partitioned and written as Delta. It applies no rules and no integrity; the data has
   no bad nulls and no late users, so that its rides must be ours.
4. with --ray-nodes: the same rebuild, in the budgeted run's slice count, its slices as Ray tasks
   on a cluster of N nodes of one CPU each (`ray.cluster_utils.Cluster`, started before the clock
   starts). Wall time is the build's; CPU is the driver's plus every task's; peak RSS is the
   largest of the driver's and any worker's (tasks measure themselves with getrusage); per slice:
   the workers' mean wall time.
5. with --gold: gold built from that silver under the budget (batches of days), then again at
   once (no budget); the day tables must hold the same rows (counts exact, sums to 1e-9).
6. with --update-changes-per-ride F: F × RIDES more binlog changes go to bronze as one more sync
   (not timed), and silver is updated incrementally under the budget (slices when the increment
   needs them) and, on a copy of the lake, at once (no budget); both must hold the same rides.
Checked: the silver `rides` tables hold the same (id, status) pairs. Sizes above
--whole-up-to run only the budgeted rebuild (50 M rides whole would need ~75 GiB). Printed per size:
changes/s, wall, CPU-s, peak RSS, slices; then the slope of time and memory over sizes.
"""
from __future__ import annotations

import argparse
import json

import pyarrow as pa
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

RAY_JOB = """
import json, os, resource, sys, time
import ray
import ridelake
from ray.cluster_utils import Cluster
lake, nodes, slices, stats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 << 20})
for _ in range(nodes - 1):
    cluster.add_node(num_cpus=1, object_store_memory=100 << 20)
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
ray_engine = ridelake.RayEngine()

def measured(tasks, work):
    def work_and_measure(task):
        import json, os, resource
        before = resource.getrusage(resource.RUSAGE_SELF)
        out = work(task)
        after = resource.getrusage(resource.RUSAGE_SELF)
        note = {"cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, "peak_rss_mib": after.ru_maxrss / 1024}
        with open(os.path.join(stats, f"{json.loads(task)['index']}-{os.getpid()}.json"), "w") as f:
            json.dump(note, f)
        return out
    return ray_engine(tasks, work_and_measure)

usage = lambda: resource.getrusage(resource.RUSAGE_SELF)  # noqa: E731
start, before = time.perf_counter(), usage()
report = ridelake.build_silver(lake, rebuild=True, slices=slices, engine=measured)
wall, after = time.perf_counter() - start, usage()
tasks = [json.load(open(os.path.join(stats, f))) for f in os.listdir(stats)]
print(json.dumps({"report": report, "wall_s": wall,
                  "cpu_s": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime + sum(t["cpu_s"] for t in tasks),
                  "peak_rss_mib": max([after.ru_maxrss / 1024] + [t["peak_rss_mib"] for t in tasks])}))
ray.shutdown()
cluster.shutdown()
"""

CHECK = """
import sys
import polars as pl
frames = [pl.read_delta(p).select("id", "status").sort("id") for p in sys.argv[1:]]
for path, frame in zip(sys.argv[2:], frames[1:]):
    assert frame.equals(frames[0]), f"{path}: {frame.height} rides, {sys.argv[1]}: {frames[0].height}"
print(frames[0].height)
"""


GOLD_CHECK = """
import sys
import polars as pl
keys = {"daily_city_kpis": ["year", "month", "day", "city"], "driver_daily": ["year", "month", "day", "driver_id"],
        "customer_daily": ["year", "month", "day", "customer_id"], "driver_stats": ["driver_id"], "customer_totals": ["customer_id"],
        "monthly_distance": ["year", "month"]}
for table, key in keys.items():
    a, b = (pl.read_delta(f"{lake}/gold/{table}").sort(key) for lake in sys.argv[1:3])
    assert a.height == b.height, f"{table}: {a.height} rows against {b.height}"
    for column in a.columns:
        x, y = a[column], b[column]
        if x.dtype.is_float():
            assert x.is_null().equals(y.is_null()), f"{table}.{column}: nulls differ"
            assert ((x - y).abs() <= 1e-9 * x.abs().clip(lower_bound=1.0)).fill_null(True).all(), f"{table}.{column}"
        else:
            assert x.equals(y), f"{table}.{column}"
print(pl.read_delta(f"{sys.argv[1]}/gold/daily_city_kpis").height)
"""


def job(code: str) -> dict:
    """A ridelake call in its own process, measured; its report parsed."""
    run = measure([sys.executable, "-c", f"import ridelake, json; print(json.dumps({code}))"])
    run["report"] = json.loads(run["stdout"].strip().splitlines()[-1])
    return run


def rebuild(lake: Path, **kwargs) -> dict:
    args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return job(f"ridelake.build_silver({str(lake)!r}, rebuild=True, {args})")


def gold_runs(lake: Path, budget: str, work: Path) -> tuple[dict, dict]:
    """Gold from `lake`'s silver under `budget`, then at once into a copy; checks both alike."""
    budgeted = job(f"ridelake.build_gold({str(lake)!r}, memory_budget={budget!r})")
    other = work / "gold-at-once"
    shutil.rmtree(other, ignore_errors=True)
    shutil.copytree(lake / "silver", other / "silver")
    os.sync()
    at_once = job(f"ridelake.build_gold({str(other)!r}, memory_budget='1TiB')")
    measure([sys.executable, "-c", GOLD_CHECK, str(lake), str(other)])
    shutil.rmtree(other)
    return budgeted, at_once


def bronze_rows(lake: Path) -> int:
    """Rows in bronze (users and rides), from the Delta log's statistics."""
    from deltalake import DeltaTable
    # (the add actions come as an Arrow batch of another library: pyarrow takes it through the C interface)
    return sum(sum(n or 0 for n in pa.table(DeltaTable(str(lake / "bronze/ridehail" / s)).get_add_actions(flatten=True)).column("num_records").to_pylist())
               for s in ("users", "rides"))


def update_runs(lake: Path, budget: str, work: Path, base: list[str], changes: int, more: int, written: int) -> tuple[dict, dict]:
    """`more` binlog changes synced to bronze, continuing the history where the `changes` of the
    second sync (its `written` records) stopped; silver updated under `budget`, and at once on a
    copy of the lake; checks both alike."""
    sync(work, lake, [*base, "--seed", "7", "--changes", str(changes + more), "--skip-snapshot", "true", "--skip-records", str(written)])
    other = work / "update-at-once"
    shutil.rmtree(other, ignore_errors=True)
    shutil.copytree(lake, other, ignore=shutil.ignore_patterns("gold"))
    os.sync()
    budgeted = job(f"ridelake.build_silver({str(lake)!r}, memory_budget={budget!r})")
    at_once = job(f"ridelake.build_silver({str(other)!r}, memory_budget='1TiB')")
    measure([sys.executable, "-c", CHECK, str(lake / "silver/rides"), str(other / "silver/rides")])
    shutil.rmtree(other)
    return budgeted, at_once


def on_ray(lake: Path, nodes: int, slices: int, work: Path) -> dict:
    stats = work / f"ray-stats-{nodes}"
    shutil.rmtree(stats, ignore_errors=True)
    stats.mkdir()
    run = measure([sys.executable, "-c", RAY_JOB, str(lake), str(nodes), str(slices), str(stats)])
    result = json.loads(run["stdout"].strip().splitlines()[-1])
    shutil.rmtree(stats)
    return {**result, "driver_wall_s": run["wall_s"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rides", default="1000000,10000000", help="comma-separated sizes")
    parser.add_argument("--budget", default="2GiB")
    parser.add_argument("--changes-per-ride", type=float, default=0.5)
    parser.add_argument("--whole-up-to", type=int, default=20_000_000,
                        help="sizes above this run only the budgeted rebuild (a whole one would not fit in memory)")
    parser.add_argument("--ray-nodes", default="", help="comma-separated Ray cluster sizes (nodes of one CPU) to run the budgeted slices on")
    parser.add_argument("--gold", action="store_true", help="also build gold under the budget and at once")
    parser.add_argument("--update-changes-per-ride", type=float, default=0.0,
                        help="also sync this many changes per ride more and update silver under the budget and at once")
    parser.add_argument("--work", type=Path, help="where the lakes go (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ridelake-scale-", dir=args.work))
    rows, golds, updates = [], [], []
    for rides in [int(s) for s in args.rides.split(",")]:
        users, changes = max(rides // 20, 100), int(rides * args.changes_per_ride)
        lake = work / f"lake-{rides}"
        base = ["--users", str(users), "--rides", str(rides), "--bad-null-rate", "0", "--late-user-rate", "0",
                "--user-delete-rate", "0", "--type-change-rate", "0", "--state-every", "1000000"]
        print(f"bronze: {rides:,} rides, {users:,} users, then {changes:,} changes …", file=sys.stderr)
        sync(work, lake, [*base, "--seed", "7", "--changes", "0"])
        snapshot = bronze_rows(lake)
        if changes:
            sync(work, lake, [*base, "--seed", "7", "--changes", str(changes), "--skip-snapshot", "true"])
        written = bronze_rows(lake) - snapshot
        os.sync()
        print(f"  rebuild under {args.budget} …", file=sys.stderr)
        budgeted = rebuild(lake, memory_budget=args.budget)
        budgeted_rides = work / f"rides-budgeted-{rides}"
        shutil.copytree(lake / "silver/rides", budgeted_rides)
        os.sync()
        rays = []
        for nodes in [int(n) for n in args.ray_nodes.split(",") if n]:
            print(f"  the same slices on Ray, {nodes} node(s) …", file=sys.stderr)
            ray_run = on_ray(lake, nodes, budgeted["report"]["slices"], work)
            measure([sys.executable, "-c", CHECK, str(budgeted_rides), str(lake / "silver/rides")])
            rays.append((nodes, ray_run))
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
        rows.append((rides, read, published, budgeted, whole, peer, rays))
        if args.gold:
            print(f"  gold under {args.budget}, then at once …", file=sys.stderr)
            golds.append((rides, *gold_runs(lake, args.budget, work)))
        if args.update_changes_per_ride:
            more = int(rides * args.update_changes_per_ride)
            print(f"  {more:,} more changes; silver updated under {args.budget}, then at once …", file=sys.stderr)
            updates.append((rides, *update_runs(lake, args.budget, work, base, changes, more, written)))
        shutil.rmtree(budgeted_rides)
        if not args.keep:
            shutil.rmtree(lake)
    print(f"\nscale benchmark: silver rebuild (initial build) of the generator's rides, budget {args.budget}, {os.cpu_count()} cores")
    print(f"{'rides':>12}{'changes':>12}{'job':>26}{'slices':>8}{'changes/s':>12}{'wall s':>9}{'CPU s':>9}{'peak RSS MiB':>14}")
    for rides, read, published, budgeted, whole, peer, rays in rows:
        runs = [("ridelake, budget", budgeted, budgeted["report"]["slices"])]
        runs += [(f"same slices, Ray {nodes} node{'s' if nodes > 1 else ''}", run, run["report"]["slices"]) for nodes, run in rays]
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
        for nodes, run in rays:
            seconds = run["report"]["slice_seconds"]
            print(f"{'':>12}{'':>12}{'':>26}{'':>8}  Ray {nodes}: {len(seconds)} slices, {sum(seconds) / len(seconds):.1f} s per slice in a "
                  f"worker; the rest (users, plan, commits) {run['wall_s'] - sum(seconds) / nodes:.1f} s if the slices divide by the nodes")
    for title, runs, count, unit, parts_name in [("gold from silver (initial build)", golds, "rows_read", "rides", "batches"),
                                                 ("silver update (incremental)", updates, "rides_read", "changes", "slices")]:
        if not runs:
            continue
        print(f"\n{title}, budget {args.budget}")
        print(f"{'rides':>12}{unit:>12}{'job':>26}{parts_name:>8}{unit + '/s':>12}{'wall s':>9}{'CPU s':>9}{'peak RSS MiB':>14}")
        for rides, budgeted, at_once in runs:
            for name, run in [("under the budget", budgeted), ("at once", at_once)]:
                n = run["report"][count]
                parts = run["report"].get("batches", run["report"].get("slices"))
                print(f"{rides:>12,}{n:>12,}{name:>26}{parts:>8}{n / run['wall_s']:>12,.0f}{run['wall_s']:>9.1f}"
                      f"{run['cpu_s']:>9.1f}{run['peak_rss_mib']:>14,.0f}")
            print(f"{'':>12}{'':>12}{'ratio':>26}{'':>8}  budget/at once: {budgeted['wall_s'] / at_once['wall_s']:.2f}x time, "
                  f"{budgeted['peak_rss_mib'] / at_once['peak_rss_mib']:.2f}x memory (the same tables)")
    per = lambda run, c: run["wall_s"] / c * 1e6  # noqa: E731
    if len(rows) >= 2:
        (r0, c0, _, b0, _, _, _), (r1, c1, _, b1, _, _, _) = rows[0], rows[-1]
        print(f"\nslope {r0:,} -> {r1:,} rides, budgeted: {per(b0, c0):.2f} -> {per(b1, c1):.2f} µs per change, "
              f"peak RSS {b0['peak_rss_mib']:,.0f} -> {b1['peak_rss_mib']:,.0f} MiB")
        whole_rows = [r for r in rows if r[4]]
        if len(whole_rows) >= 2:
            (r0, c0, _, _, w0, _, _), (r1, c1, _, _, w1, _, _) = whole_rows[0], whole_rows[-1]
            print(f"slope {r0:,} -> {r1:,} rides, one slice: {per(w0, c0):.2f} -> {per(w1, c1):.2f} µs per change, "
                  f"peak RSS {w0['peak_rss_mib']:,.0f} -> {w1['peak_rss_mib']:,.0f} MiB")
    if not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
