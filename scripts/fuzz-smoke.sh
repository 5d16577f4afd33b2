#!/usr/bin/env bash
# Fuzz smoke test: builds the libFuzzer targets in fuzz/ (cargo-fuzz) and runs each
# one for a short while from the committed seed corpus. Fails on the first crash,
# leaving the input under fuzz/artifacts/<target>/ (replay it with
# `cargo fuzz run -s none -a <target> <file>`).
#
#   FERRY_FUZZ_SECS   seconds per target (default 25)
#   FERRY_FUZZ_TARGETS  space-separated subset of targets (default: all)
#
# The instrumented build (every dependency again, with coverage flags: about 11
# CPU-minutes) lives outside the repo, in ${FERRY_CACHE:-~/.cache/ferry}/fuzz-target,
# so a second run on the same machine only rebuilds ferry itself.
#
# Runs on the pinned stable toolchain: cargo-fuzz passes a few unstable flags, which
# RUSTC_BOOTSTRAP=1 lets stable accept. No sanitizer (`-s none`): ferry forbids unsafe
# code, so AddressSanitizer would only slow the search; debug assertions and overflow
# checks stay on (`-a`).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: bash scripts/prereqs.sh installs it" >&2
  exit 1
fi
export RUSTC_BOOTSTRAP=1
secs="${FERRY_FUZZ_SECS:-25}"
targets="${FERRY_FUZZ_TARGETS:-$(cargo fuzz list)}"

# New corpus entries and the targets' embedded data go to a scratch directory (on
# tmpfs when there is one): the committed corpus stays as it is.
base=/tmp
[[ -d /dev/shm && -w /dev/shm ]] && base=/dev/shm
work=$(mktemp -d "$base/ferry-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT

target_dir="${FERRY_CACHE:-$HOME/.cache/ferry}/fuzz-target"
mkdir -p "$target_dir"
nice cargo fuzz build -s none -a --target-dir "$target_dir"
for t in $targets; do
  mkdir -p "$work/corpus/$t" "$work/tmp"
  echo "fuzz: $t for ${secs}s"
  if ! TMPDIR="$work/tmp" nice cargo fuzz run -s none -a --target-dir "$target_dir" "$t" "$work/corpus/$t" "fuzz/corpus/$t" -- \
    -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 -print_final_stats=1 \
    >"$work/$t.log" 2>&1; then
    tail -n 60 "$work/$t.log"
    echo "fuzz: $t CRASHED (input saved under fuzz/artifacts/$t/)" >&2
    exit 1
  fi
  runs=$(grep -Eo '^stat::number_of_executed_units: *[0-9]+' "$work/$t.log" | grep -Eo '[0-9]+$' || echo '?')
  echo "fuzz: $t ok, $runs executions"
done
