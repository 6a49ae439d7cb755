"""Bronze benchmark: destination-delta-lake vs a Python baseline and a DuckDB peer, same input,
same checks.

usage: python bench/bench.py [--records N] [--keep]

Generates N ride-hailing CDC records (default 5M) and feeds the same file to three contestants
writing to a local folder: destination-delta-lake and the naive Python loop
(baseline_destination.py) read it on stdin, the DuckDB peer (peer_duckdb.py: DuckDB's parallel
NDJSON reader typed from the catalog, deltalake.write_deltalake) reads the file itself. Then it
checks every output (row counts per table equal the input's, every STATE echoed) and prints
records/s, MB/s, CPU-seconds, peak RSS, files and commits, the ratios of ours to the baseline and
to the peer, and whether the target is met: at least 1.5x the peer's records/s with a peak RSS
under 300 MiB. Timings come from wait4() rusage of each child process. The figures and ratios also
go to bench.json in the work folder (kept with --keep).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deltalake import DeltaTable

from measure import measure

REPO = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("RIDELAKE_BIN_DIR", Path.home() / ".cache/ridelake/target/release"))
# The target: records/s at least this many times the DuckDB peer's, peak RSS under this.
PEER_SPEEDUP, MAX_RSS_MIB = 1.5, 300


def inspect(lake: Path) -> dict:
    rows, files, commits = {}, 0, 0
    for log in lake.rglob("_delta_log"):
        table = DeltaTable(str(log.parent))
        rows[log.parent.name] = table.to_pyarrow_dataset().count_rows()
        files += len(table.file_uris())
        commits += table.version() + 1
    return {"rows": rows, "files": files, "commits": commits}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=5_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ridelake-bench-"))
    messages, catalog = work / "messages.jsonl", work / "catalog.json"
    print(f"generating {args.records:,} records …", file=sys.stderr)
    subprocess.run([str(BIN / "ridelake-gen"), "--records", str(args.records), "--out", str(messages),
                    "--catalog", str(catalog)], check=True)
    size_mb = messages.stat().st_size / 1e6
    expected: dict[str, int] = {}
    states = 0
    with open(messages, "rb") as f:
        for line in f:
            if line.startswith(b'{"type":"RECORD"'):
                stream = b"rides" if b'"stream":"rides"' in line[:120] else b"users"
                expected[stream.decode()] = expected.get(stream.decode(), 0) + 1
            else:
                states += 1
    # name -> (command for a lake folder, stdin): the DuckDB peer reads the file by its path, as its
    # parallel reader needs a file.
    contestants = {
        "destination-delta-lake": (lambda lake: [str(BIN / "destination-delta-lake"), "write", "--config",
                                                 str(config(work, lake)), "--catalog", str(catalog)], messages),
        "python baseline": (lambda lake: [sys.executable, str(REPO / "bench/baseline_destination.py"), str(catalog), str(lake)],
                            messages),
        "duckdb peer": (lambda lake: [sys.executable, str(REPO / "bench/peer_duckdb.py"), str(catalog), str(lake), str(messages)],
                        None),
    }
    results = {}
    for name, (command, stdin) in contestants.items():
        # Let the kernel finish writing earlier files so that no contestant pays for it.
        os.sync()
        time.sleep(2)
        lake = work / name.replace(" ", "-")
        print(f"running {name} …", file=sys.stderr)
        out = work / f"{lake.name}.out"
        figures = measure(command(lake), stdin, out)
        figures |= inspect(lake)
        echoed = sum(1 for line in open(out) if '"type":"STATE"' in line or line.startswith('{"state"'))
        # Same output checks for every contestant.
        assert figures["rows"] == expected, f"{name}: rows {figures['rows']} != input {expected}"
        assert echoed == states, f"{name}: echoed {echoed} of {states} states"
        results[name] = figures
        shutil.rmtree(lake)
    n = sum(expected.values())
    print(f"\nbronze benchmark: {n:,} records, {size_mb:,.0f} MB of Airbyte JSON, {states} states, {os.cpu_count()} cores")
    print(f"{'contestant':<24}{'records/s':>12}{'MB/s':>9}{'wall s':>9}{'CPU s':>9}{'peak RSS MiB':>14}{'files':>7}{'commits':>9}")
    for name, r in results.items():
        print(f"{name:<24}{n / r['wall_s']:>12,.0f}{size_mb / r['wall_s']:>9,.1f}{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}"
              f"{r['peak_rss_mib']:>14,.0f}{r['files']:>7}{r['commits']:>9}")
    ours = results["destination-delta-lake"]
    ratios = {}
    print()
    for other in ("python baseline", "duckdb peer"):
        # Theirs over ours: above 1, ours is faster and uses less CPU, less memory.
        theirs = results[other]
        ratios[other] = r = {"records_per_s": theirs["wall_s"] / ours["wall_s"], "cpu": theirs["cpu_s"] / ours["cpu_s"],
                             "memory": theirs["peak_rss_mib"] / ours["peak_rss_mib"]}
        print(f"ratio ours/{other}: {r['records_per_s']:.1f}x records/s, {r['cpu']:.1f}x less CPU, {r['memory']:.1f}x less memory")
    speedup = ratios["duckdb peer"]["records_per_s"]
    met = speedup >= PEER_SPEEDUP and ours["peak_rss_mib"] < MAX_RSS_MIB
    print(f"target ≥ {PEER_SPEEDUP}x the DuckDB peer's records/s and peak RSS < {MAX_RSS_MIB} MiB: "
          f"{'met' if met else 'NOT met'} ({speedup:.2f}x, {ours['peak_rss_mib']:,.0f} MiB)")
    print(json.dumps({"records": n, "results": results, "ratios": ratios, "target_met": met}), file=open(work / "bench.json", "w"))
    if not args.keep:
        shutil.rmtree(work)


def config(work: Path, lake: Path) -> Path:
    path = work / "config.json"
    path.write_text(json.dumps({"storage": {"storage_type": "Local", "local_path": str(lake)}}))
    return path


if __name__ == "__main__":
    main()
