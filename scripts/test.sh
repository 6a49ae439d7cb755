#!/usr/bin/env bash
# Sets up and runs every test: Rust unit + integration tests, then the end-to-end suite against
# real components (Ceph RGW, moto, PyAirbyte + source-faker, deltalake and DuckDB readers).
# Idempotent; caches live in ~/.cache/ridelake (override with RIDELAKE_CACHE).
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${RIDELAKE_CACHE:-$HOME/.cache/ridelake}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
export RIDELAKE_BIN_DIR=$CARGO_TARGET_DIR/release

echo "== setup: Python venvs and test servers" >&2
bash scripts/setup-test-env.sh

echo "== build (release profile; incremental after the first run)" >&2
cargo build --release --locked --bins

echo "== Rust tests" >&2
cargo test --release --locked

echo "== end-to-end tests" >&2
"$CACHE/venvs/test/bin/python" -m pytest tests/e2e "$@"
