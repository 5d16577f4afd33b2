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
# shellcheck source=lib/tools.sh
source "$(dirname "$0")/lib/tools.sh"
# shellcheck source=lib/python.sh
source "$(dirname "$0")/lib/python.sh"
# What the services and the test tools are built with: each is run, not only looked
# up, so a broken shim or a too-old version is named here instead of failing later.
missing=0
need_tool java 'java -version 2>&1 | grep -Eq "version \"(1[7-9]|2[0-9])"' \
  "Java 17 or later (apt-get install openjdk-17-jdk-headless)" || missing=1
need_tool mvn 'mvn -v' "Maven (apt-get install maven); Kafka and Cassandra come from Maven Central" || missing=1
need_tool go 'go version' "Go (apt-get install golang-go); Jaeger and helm come from the Go module proxy" || missing=1
find_python 3 >/dev/null || { echo "prerequisite missing: Python 3.9+ does not run; fix: apt-get install python3 python3-venv" >&2; missing=1; }
find_python 2.7 >/dev/null || { echo "prerequisite missing: Python 2.7 does not run (autobahntestsuite needs it); fix: pyenv install 2.7.18" >&2; missing=1; }
((missing == 0)) || exit 1
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
