#!/usr/bin/env bash
# Builds the `ridelake` wheel: release profile, abi3 (one wheel for every CPython >= 3.11),
# manylinux-tagged by maturin's own compliance check. Prints the wheel's path on stdout.
#   scripts/wheel.sh [--out DIR]            (default DIR: ~/.cache/ridelake/wheels)
# Analysts install it in any venv: pip install "$(scripts/wheel.sh)"
# The main job, the tests and the benchmarks install this same wheel. It builds in the same
# target dir as the release binaries and the lakehouse tests: after those, only polars with its
# Python support (pyo3-polars turns it on) and the glue are left, 8.5 minutes on 2 cores here; a
# cold build takes 25-35 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${RIDELAKE_CACHE:-$HOME/.cache/ridelake}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
OUT=$CACHE/wheels
case "${1:-}" in
  --out) OUT=$2 ;;
  "") ;;
  *) sed -n '2,5p' "$0" >&2; exit 2 ;;
esac
bash scripts/setup-test-env.sh --minimal
# maturin from the test venv; always the same interpreter, so that pyo3's build fingerprint (which
# names it) does not change between runs and rebuild the polars crates that depend on pyo3.
VENV=$CACHE/venvs/test
NEW=$(mktemp -d "$CACHE/wheel-build.XXXXXX")
trap 'rm -rf "$NEW"' EXIT
PATH=$VENV/bin:$PATH "$VENV/bin/maturin" build --release --locked -m pylib/Cargo.toml \
  --interpreter "$VENV/bin/python" --out "$NEW" >&2
mkdir -p "$OUT"
rm -f "$OUT"/ridelake-*.whl
mv "$NEW"/ridelake-*.whl "$OUT"/
realpath "$OUT"/ridelake-*.whl
