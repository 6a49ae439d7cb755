#!/usr/bin/env bash
# The main job on the embedded default: generate ride-hailing CDC, land it in a local lake folder
# through destination-delta-lake (bronze), and print what landed. Needs no service.
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
echo "== building (the first build takes ~8 minutes on 2 cores)" >&2
cargo build --release --locked -p ridelake-core -p destination-delta-lake --bins
WORK=$(mktemp -d); trap 'rm -rf "$WORK"' EXIT
mkdir -p "$LAKE"
printf '{"storage":{"storage_type":"Local","local_path":"%s/bronze"},"flush_interval_seconds":5}\n' "$LAKE" > "$WORK/config.json"
echo "== generating $RECORDS CDC records (seed $SEED) and writing bronze to $LAKE/bronze" >&2
"$BIN/ridelake-gen" --records "$RECORDS" --seed "$SEED" --catalog "$WORK/catalog.json" \
  | "$BIN/destination-delta-lake" write --config "$WORK/config.json" --catalog "$WORK/catalog.json" \
  > "$WORK/out.jsonl"
grep -c '"type":"STATE"' "$WORK/out.jsonl" | xargs -I{} echo "states echoed: {}"
grep '"level":"INFO"' "$WORK/out.jsonl" | tail -1 | sed 's/.*"message":"\([^"]*\)".*/\1/'
for table in "$LAKE"/bronze/*/*/; do
  version=$(ls "$table/_delta_log" | grep -c '\.json$')
  files=$(find "$table" -name '*.parquet' | wc -l)
  echo "bronze table ${table#$LAKE/}: $((version)) commits, $files parquet files, $(du -sh "$table" | cut -f1)"
done
