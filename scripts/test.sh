#!/usr/bin/env bash
# Sets up and runs every test: Rust unit + integration tests (connector, core, lakehouse), builds
# the ridelake Python package, then the end-to-end suite against real components (Ceph RGW, moto,
# PyAirbyte + source-faker, deltalake and DuckDB readers).
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

echo "== lakehouse Rust tests (dev profile: polars and datafusion build in ~7 minutes cold)" >&2
cargo test --locked -p ridelake-lakehouse

echo "== ridelake Python package (maturin develop into the test venv)" >&2
(cd pylib && VIRTUAL_ENV=$CACHE/venvs/test PATH=$CACHE/venvs/test/bin:$CACHE/venvs/tools/bin:$PATH \
  "$CACHE/venvs/test/bin/maturin" develop --uv --locked)
# The Mage venv runs the same interpreter: it imports the same build through a path file (a second
# maturin develop for another venv would rebuild polars, since pyo3's fingerprint names the venv).
echo "$PWD/pylib/python" > "$("$CACHE/venvs/mage/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/ridelake.pth"

echo "== end-to-end tests" >&2
"$CACHE/venvs/test/bin/python" -m pytest tests/e2e "$@"
