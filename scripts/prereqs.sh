#!/usr/bin/env bash
# Build prerequisites: Debian packages librdkafka's bundled build and TLS need, the
# pinned Rust toolchain (the machine's stable when it is that version),
# cargo-nextest, the test runner scripts/test.sh uses, and cargo-fuzz, which builds
# and runs the fuzz targets (scripts/fuzz-smoke.sh).
set -euo pipefail
need_apt=()
for p in build-essential pkg-config libssl-dev zlib1g-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt+=("$p")
done
if ((${#need_apt[@]})); then
  echo "installing ${need_apt[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi
bash "$(dirname "$0")/toolchain.sh"
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest" >&2
  cargo install --locked cargo-nextest
fi
if ! cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0\.13\.2$'; then
  echo "installing cargo-fuzz" >&2
  cargo install --locked cargo-fuzz@0.13.2
fi
bash "$(dirname "$0")/prereqs-web.sh"
