#!/usr/bin/env bash
# The main job on the embedded default: generate ride-hailing CDC, land it in a local lake folder
# through destination-delta-lake (bronze), build silver and gold with the ridelake package, and
# print a summary. Needs no service.
#   scripts/demo.sh [--records N] [--lake DIR] [--seed S]
# Run it again with another --seed to add new changes to the same lake.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORDS=200000; LAKE=$PWD/lake; SEED=42
while [ $# -gt 0 ]; do
  case "$1" in
    --records) RECORDS=$2; shift 2 ;;
    --lake) LAKE=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    *) echo "usage: scripts/demo.sh [--records N] [--lake DIR] [--seed S]" >&2; exit 2 ;;
  esac
done
CACHE=${RIDELAKE_CACHE:-$HOME/.cache/ridelake}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
BIN=$CARGO_TARGET_DIR/release
echo "== setting up (the first run builds for ~20 minutes on 2 cores; later runs take seconds)" >&2
bash scripts/setup-test-env.sh --minimal
cargo build --release --locked -p ridelake-core -p destination-delta-lake --bins
(cd pylib && VIRTUAL_ENV=$CACHE/venvs/test PATH=$CACHE/venvs/test/bin:$CACHE/venvs/tools/bin:$PATH \
  "$CACHE/venvs/test/bin/maturin" develop --uv --locked >&2)
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
mkdir -p "$LAKE"
printf '{"storage":{"storage_type":"Local","local_path":"%s/bronze"},"flush_interval_seconds":5}\n' "$LAKE" > "$WORK/config.json"
echo "== generating $RECORDS CDC records (seed $SEED) and writing bronze to $LAKE/bronze" >&2
"$BIN/ridelake-gen" --records "$RECORDS" --seed "$SEED" --catalog "$WORK/catalog.json" \
  | "$BIN/destination-delta-lake" write --config "$WORK/config.json" --catalog "$WORK/catalog.json" \
  > "$WORK/out.jsonl"
grep -c '"type":"STATE"' "$WORK/out.jsonl" | xargs -I{} echo "states echoed: {}"
grep '"level":"INFO"' "$WORK/out.jsonl" | tail -1 | sed 's/.*"message":"\([^"]*\)".*/\1/'
"$CACHE/venvs/test/bin/python" scripts/pipeline_summary.py "$LAKE"
