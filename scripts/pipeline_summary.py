"""Builds silver and gold from the bronze tables of a lake and prints a short summary.

usage: pipeline_summary.py LAKE [--namespace NS]
"""
import argparse
import sys
import time

import polars as pl
import ridelake


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("lake")
    parser.add_argument("--namespace", default="ridehail")
    args = parser.parse_args()
    lake, ns = args.lake, args.namespace
    started = time.perf_counter()
    print("== silver: applying bronze changes", file=sys.stderr)
    silver = ridelake.build_silver(lake, namespace=ns)
    print("== gold: aggregating the days that changed", file=sys.stderr)
    gold = ridelake.build_gold(lake, namespace=ns)
    elapsed = time.perf_counter() - started

    def rows(layer: str, table: str) -> int:
        try:
            return ridelake.read_table(lake, layer, table, namespace=ns).height
        except ridelake.MissingTableError:
            return 0

    print(f"\nridelake lake {lake}  (silver + gold in {elapsed:.1f} s)")
    print(f"  bronze   users {rows('bronze', 'users'):>10,}   rides {rows('bronze', 'rides'):>10,}   (every change as received)")
    print(f"  silver   users {rows('silver', 'users'):>10,}   rides {rows('silver', 'rides'):>10,}   "
          f"pending {rows('silver', 'rides_pending'):,}   deleted {rows('silver', 'rides_deleted'):,}   "
          f"quarantined {rows('silver', 'quarantine'):,}")
    print(f"  this run read {silver['rows_read']:,} bronze rows: {silver['rides_upserted']:,} rides and "
          f"{silver['users_upserted']:,} users upserted, {silver['released']:,} rides released from pending, "
          f"{silver['quarantined']:,} changes quarantined; gold recomputed {gold['days_recomputed']} day(s)")
    try:
        top = ridelake.read_table(lake, "gold", "driver_stats", namespace=ns).sort(["completed", "driver_id"], descending=[True, False]).head(5)
    except ridelake.MissingTableError:
        return
    print("\n  top drivers (completed rides)")
    for r in top.iter_rows(named=True):
        rating = "n/a" if r["mean_rating"] is None else f"{r['mean_rating']:.2f}"
        print(f"    driver {r['driver_id']:>8}  {r['completed']:>5} completed  {r['distance_km']:>9,.1f} km  rating {rating}")
    monthly = ridelake.read_table(lake, "gold", "monthly_distance", namespace=ns).sort(["year", "month"]).tail(3)
    print("\n  latest months")
    for r in monthly.iter_rows(named=True):
        print(f"    {r['year']}-{r['month']:02d}  {r['rides']:>8,} rides  {r['completed']:>8,} completed  {r['distance_km']:>12,.1f} km")


if __name__ == "__main__":
    main()
