#!/usr/bin/env bash
# The benchmark command: builds the release binaries and the release `ridelake` wheel, installs the
# wheel into its own venv, and runs the benchmarks, each against its baseline in the same run.
#   scripts/bench.sh bronze [--records N]                      destination vs a Python baseline
#                                                              and a DuckDB peer (read_ndjson +
#                                                              deltalake); target: ≥ 1.5x the
#                                                              peer's records/s, peak RSS < 300 MiB
#   scripts/bench.sh lakehouse [--rides N --changes N --users N --repeat N --prepared DIR --uuid-keys]
#                                                              silver/gold vs a polars+deltalake MERGE
#   scripts/bench.sh maintenance [--syncs 200 --changes N --rides N --users N]
#                                                              ridelake.maintain on a lake of many
#                                                              small syncs: its cost, and silver's
#                                                              rebuild/update on the lake without
#                                                              and with maintenance
#   scripts/bench.sh scale [--rides 1000000,10000000 --budget 2GiB --changes-per-ride 0.5 --ray-nodes 1,2
#                          --gold --update-changes-per-ride 0.5]
#                                                              silver's rebuild (initial build) at
#                                                              growing sizes: under a memory budget
#                                                              (in slices), in one slice, and a
#                                                              polars+deltalake peer
#   scripts/bench.sh soak [--rate 20000 --minutes 15 --flush-seconds 5]
#                                                              paced CDC into Ceph RGW: freshness,
#                                                              memory over time, no STATE lost (no
#                                                              wheel; radosgw: scripts/setup-test-env.sh)
#   scripts/bench.sh build                                     only build (the release wheel takes
#                                                              25-35 minutes cold on 2 cores)
# Caches live in ~/.cache/ridelake (override with RIDELAKE_CACHE).
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-}; shift || true
case "$WHAT" in bronze|lakehouse|maintenance|scale|soak|build) ;; *) sed -n '2,26p' "$0" >&2; exit 2 ;; esac
CACHE=${RIDELAKE_CACHE:-$HOME/.cache/ridelake}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
export RIDELAKE_BIN_DIR=$CARGO_TARGET_DIR/release
VENV=$CACHE/venvs/bench

bash scripts/setup-test-env.sh --minimal
echo "== release binaries" >&2
cargo build --release --locked --bins
if [ "$WHAT" = soak ]; then
  # The soak runs the binaries against Ceph RGW and reads bronze back: no wheel.
  [ -x "$VENV/bin/python" ] || "$CACHE/venvs/tools/bin/uv" venv -q --python "$(command -v python3)" "$VENV"
  "$CACHE/venvs/tools/bin/uv" pip install -q --python "$VENV/bin/python" "deltalake==1.6.6" "pyarrow>=21" "boto3"
  exec "$VENV/bin/python" bench/soak.py "$@"
fi
echo "== release wheel" >&2
WHEEL=$(bash scripts/wheel.sh)
if [ ! -x "$VENV/bin/python" ]; then
  "$CACHE/venvs/tools/bin/uv" venv -q --python "$(command -v python3)" "$VENV"
fi
"$CACHE/venvs/tools/bin/uv" pip install -q --python "$VENV/bin/python" \
  "polars>=2.1,<2.2" "deltalake==1.6.6" "pyarrow>=21" "orjson" "duckdb==1.4.4" "ray==2.60.0" --reinstall-package ridelake "$WHEEL"

case "$WHAT" in
  bronze) exec "$VENV/bin/python" bench/bench.py "$@" ;;
  lakehouse) exec "$VENV/bin/python" bench/bench_lakehouse.py "$@" ;;
  maintenance) exec "$VENV/bin/python" bench/bench_maintenance.py "$@" ;;
  scale) exec "$VENV/bin/python" bench/bench_scale.py "$@" ;;
  build) echo "built: $WHEEL" >&2 ;;
esac
