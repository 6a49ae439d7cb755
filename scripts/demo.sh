#!/usr/bin/env bash
# The main job on the embedded default: sets up what it needs (a Python venv, the release binaries,
# the release wheel of the ridelake package), then generates ride-hailing CDC, lands it in bronze through
# destination-delta-lake, builds silver and gold with ridelake, prints a summary and writes an HTML
# report. Needs no service. Run it again to continue the same lake with new changes.
#   scripts/demo.sh [--lake DIR|s3://bucket/prefix] [--records N] [--seed S] [--report FILE]
#                   [--s3-endpoint URL] [--s3-region R]
# (S3/MinIO: credentials from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.)
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in -h|--help) sed -n '2,8p' "$0"; exit 0 ;; esac
CACHE=${RIDELAKE_CACHE:-$HOME/.cache/ridelake}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
export RIDELAKE_BIN_DIR=$CARGO_TARGET_DIR/release
echo "== setting up (the first run builds for ~45 minutes on 2 cores; later runs take seconds)" >&2
bash scripts/setup-test-env.sh --minimal
cargo build --release --locked -p ridelake-core -p destination-delta-lake --bins
WHEEL=$(bash scripts/wheel.sh)
"$CACHE/venvs/tools/bin/uv" pip install -q --python "$CACHE/venvs/test/bin/python" --reinstall-package ridelake "$WHEEL"
exec "$CACHE/venvs/test/bin/python" scripts/run_pipeline.py "$@"
