#!/usr/bin/env bash
# Fuzzes the destination's input side for a bounded time: the `messages` target (any bytes as a
# sync's stdin) and the `values` target (any text as a value of every column type), each starting
# from the committed corpus in fuzz/corpus/. Installs cargo-fuzz into the cache the first time.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]      (default 60; CI runs the default)
# A failure prints the crashing input's path: add it to fuzz/corpus/<target>/ once fixed, so that
# `cargo test` (connector/tests/fuzz_corpus.rs) replays it for good. New inputs the fuzzer finds go
# to a scratch folder, not into the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
CACHE=${RIDELAKE_CACHE:-$HOME/.cache/ridelake}
TOOLS=$CACHE/tools
if [ ! -x "$TOOLS/bin/cargo-fuzz" ]; then
  echo "[fuzz] installing cargo-fuzz into $TOOLS" >&2
  cargo install --quiet --locked cargo-fuzz --version 0.13.2 --root "$TOOLS"
fi
export PATH=$TOOLS/bin:$PATH
# Instrumented builds differ from the release ones: their own target dir keeps both warm.
export CARGO_TARGET_DIR=$CACHE/fuzz-target
# cargo-fuzz's default AddressSanitizer needs a nightly compiler; without it (`-s none`, which the
# stable compiler builds) Rust's bounds checks still turn memory errors into panics, and there is
# no unsafe code of ours to sanitize. The build is optimized like the release binary (`-O`, so
# integer overflow wraps, as it does in production); the targets' models catch wrong values.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cargo fuzz build -s none -O >&2
for target in messages values; do
  mkdir -p "$WORK/$target" "$WORK/crashes"
  echo "[fuzz] $target for ${SECONDS_PER_TARGET}s from fuzz/corpus/$target" >&2
  if ! cargo fuzz run -s none -O "$target" "$WORK/$target" "fuzz/corpus/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$WORK/crashes/" -print_final_stats=1 2> "$WORK/$target.log"; then
    tail -40 "$WORK/$target.log" >&2
    mkdir -p fuzz/artifacts && cp "$WORK"/crashes/* fuzz/artifacts/ 2>/dev/null || true
    echo "[fuzz] $target failed; the input is in fuzz/artifacts/" >&2
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)" "$WORK/$target.log" | sed "s/^/[fuzz] $target /" >&2
done
