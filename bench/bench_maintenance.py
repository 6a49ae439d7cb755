"""Maintenance benchmark: what `ridelake.maintain` costs, and what it saves the next jobs.

usage: python bench/bench_maintenance.py [--syncs 200] [--changes 400000] [--rides 200000] [--users 20000] [--silver-every 10]

1. a lake as frequent syncs leave it: the generator's history (snapshot, then CHANGES binlog
   changes) cut into SYNCS syncs at STATE messages, each landed by destination-delta-lake with a
   commit at every STATE; silver and gold built after every SILVER_EVERY syncs (not timed);
2. a copy of it is maintained with no retention (compaction, vacuum, log cleanup, checkpoints),
   timed in its own process (wait4: wall, CPU, peak RSS);
3. timed on both lakes, each in its own process: a silver rebuild from all of bronze (what a
   model change or a refresh costs), then one more sync and an incremental silver run;
4. checked: both lakes' silver and gold hold the same rows (DuckDB-independent: Python deltalake).

Files and log entries are counted on disk before and after.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from measure import measure

BIN = Path(os.environ.get("RIDELAKE_BIN_DIR", Path.home() / ".cache/ridelake/target/release"))


def history(work: Path, args) -> tuple[list[Path], Path]:
    """The generator's history cut at STATE messages into SYNCS + 1 syncs (the last one is kept
    for the incremental run after maintenance), one file each, and its catalog. Streamed: a
    child inherits its parent's peak RSS, so the parent never holds the history."""
    catalog, messages = work / "catalog.json", work / "messages.jsonl"
    subprocess.run([str(BIN / "ridelake-gen"), "--users", str(args.users), "--rides", str(args.rides), "--changes", str(args.changes),
                    "--state-every", str(args.state_every), "--seed", "5", "--catalog", str(catalog), "--out", str(messages)],
                   check=True, capture_output=True)
    with messages.open("rb") as f:
        states = sum(1 for line in f if b'"type":"STATE"' in line)
    parts = args.syncs + 1
    if states < parts:
        raise SystemExit(f"{states} STATE messages cannot make {parts} syncs: lower --state-every")
    # Sync k ends after STATE number ends[k] (1-based); the last sync takes the rest.
    ends = [states * (k + 1) // parts for k in range(parts)]
    paths = [work / f"sync-{k:04}.jsonl" for k in range(parts)]
    k, seen = 0, 0
    out = paths[0].open("wb")
    with messages.open("rb") as f:
        for line in f:
            out.write(line)
            if b'"type":"STATE"' in line:
                seen += 1
                if k < parts - 1 and seen == ends[k]:
                    out.close()
                    k += 1
                    out = paths[k].open("wb")
    out.close()
    messages.unlink()
    return paths, catalog


def land(work: Path, lake: Path, catalog: Path, sync: Path) -> None:
    config = work / f"config-{lake.name}.json"
    config.write_text(json.dumps({"storage": {"storage_type": "Local", "local_path": str(lake / "bronze")}, "flush_interval_seconds": 0}))
    with sync.open("rb") as stdin:
        subprocess.run([str(BIN / "destination-delta-lake"), "write", "--config", str(config), "--catalog", str(catalog)],
                       stdin=stdin, stdout=subprocess.DEVNULL, check=True)


def on_disk(lake: Path) -> dict:
    data = [p for p in lake.rglob("*.parquet") if "_delta_log" not in p.parts]
    logs = list(lake.rglob("_delta_log/*.json"))
    return {"files": len(data), "mib": sum(p.stat().st_size for p in data) / 2**20, "log_entries": len(logs)}


def py(code: str) -> dict:
    return measure([sys.executable, "-c", code])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--syncs", type=int, default=200)
    parser.add_argument("--changes", type=int, default=400_000)
    parser.add_argument("--rides", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--state-every", type=int, default=2_000)
    parser.add_argument("--silver-every", type=int, default=10)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ridelake-bench-maintenance-"))
    plain, kept = work / "plain", work / "kept"
    syncs, catalog = history(work, args)
    last = syncs.pop()
    print(f"landing {len(syncs)} syncs, silver and gold every {args.silver_every} …", file=sys.stderr)
    for i, sync in enumerate(syncs):
        land(work, plain, catalog, sync)
        if (i + 1) % args.silver_every == 0 or i == len(syncs) - 1:
            py(f"import ridelake; ridelake.build_silver({str(plain)!r}); ridelake.build_gold({str(plain)!r})")
    shutil.copytree(plain, kept)
    before = on_disk(kept)
    os.sync()
    maintained = py(f"import ridelake, json; print(json.dumps(ridelake.maintain({str(kept)!r}, retention_hours=0, log_retention_hours=0)))")
    report = json.loads(maintained["stdout"].strip().splitlines()[-1])
    after = on_disk(kept)
    jobs = {}
    for name, lake in (("never maintained", plain), ("maintained", kept)):
        os.sync()
        jobs[(name, "rebuild")] = py(f"import ridelake; r = ridelake.build_silver({str(lake)!r}, rebuild=True); assert r['rebuild']")
        py(f"import ridelake; ridelake.build_gold({str(lake)!r})")
        land(work, lake, catalog, last)
        os.sync()
        jobs[(name, "incremental")] = py(f"import ridelake; r = ridelake.build_silver({str(lake)!r}); assert r['rebuild'] is None, r")
        py(f"import ridelake; ridelake.build_gold({str(lake)!r})")
    py(f"""
import polars as pl
from deltalake import DeltaTable
def read(lake, table, key):
    frame = pl.from_arrow(DeltaTable(f"{{lake}}/{{table}}").to_pyarrow_table())
    return frame.drop([c for c in ("_airbyte_raw_id", "_cdc_bronze_version", "bronze_version") if c in frame.columns]).sort(key)
for table, key in (("silver/users", "id"), ("silver/rides", "id"), ("silver/rides_pending", "id"), ("gold/driver_stats", "driver_id")):
    a, b = read({str(plain)!r}, table, key), read({str(kept)!r}, table, key)
    assert a.equals(b), f"{{table}} differs"
""")
    bronze = [t for t in report["tables"] if t["table"].startswith("bronze/")]
    print(f"\nmaintenance benchmark: {len(syncs)} syncs ({args.rides:,} rides, {args.changes:,} changes), {os.cpu_count()} cores")
    print(f"lake on disk: {before['files']:,} data files ({before['mib']:,.0f} MiB), {before['log_entries']:,} log entries"
          f" -> {after['files']:,} files ({after['mib']:,.0f} MiB), {after['log_entries']:,} log entries")
    print("bronze: " + ", ".join(f"{t['table']} {t['files_before']:,} -> {t['files_after']:,} files" for t in bronze))
    print(f"maintain (no retention): {maintained['wall_s']:.1f} s wall, {maintained['cpu_s']:.1f} s CPU, peak RSS {maintained['peak_rss_mib']:,.0f} MiB")
    print(f"{'job':<34}{'never maintained s':>20}{'maintained s':>14}{'ratio':>8}")
    for job in ("rebuild", "incremental"):
        a, b = jobs[("never maintained", job)], jobs[("maintained", job)]
        print(f"{'silver ' + job:<34}{a['wall_s']:>20.1f}{b['wall_s']:>14.1f}{a['wall_s'] / b['wall_s']:>7.1f}x")
        print(f"{'  (CPU s, peak RSS MiB)':<34}{a['cpu_s']:>11.1f} {a['peak_rss_mib']:>7,.0f}{b['cpu_s']:>7.1f} {b['peak_rss_mib']:>6,.0f}")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
