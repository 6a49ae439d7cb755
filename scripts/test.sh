#!/usr/bin/env bash
# Sets up and runs every test: Rust unit + integration tests (connector, core, lakehouse), a
# bounded fuzzing run of the destination's input side (scripts/fuzz.sh), builds
# the ridelake Python package (the release wheel of scripts/wheel.sh), then the end-to-end suite
# against real components (Ceph RGW, moto, PyAirbyte + source-faker, deltalake and DuckDB readers).
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

echo "== fuzzing the destination's input side (bounded: 45 s per target; scripts/fuzz.sh SECONDS for longer)" >&2
bash scripts/fuzz.sh "${RIDELAKE_FUZZ_SECONDS:-45}"

echo "== lakehouse Rust tests (release too: polars and datafusion build once for these tests and the wheel)" >&2
cargo test --release --locked -p ridelake-lakehouse

echo "== ridelake Python package: the release wheel, installed in the test and Mage venvs" >&2
WHEEL=$(bash scripts/wheel.sh)
UV=$CACHE/venvs/tools/bin/uv
"$UV" pip install -q --python "$CACHE/venvs/test/bin/python" --reinstall-package ridelake "$WHEEL"
MAGE_SITE=$("$CACHE/venvs/mage/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
rm -f "$MAGE_SITE/ridelake.pth"  # earlier versions imported a debug build through a path file
"$UV" pip install -q --python "$CACHE/venvs/mage/bin/python" --no-deps --reinstall-package ridelake "$WHEEL"

echo "== end-to-end tests" >&2
"$CACHE/venvs/test/bin/python" -m pytest tests/e2e "$@"
