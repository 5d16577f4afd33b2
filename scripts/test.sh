#!/usr/bin/env bash
# The whole test suite, on a fresh machine or a laptop: installs the build
# prerequisites, fetches and starts the real services (Apache Kafka, Apache
# Cassandra, Jaeger; cached under ~/.cache/ferry), then runs every test against them.
# Services this script started are stopped again at the end; ones already running
# are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/prereqs.sh

services=scripts/services/services.sh
started=()
status=$(bash "$services" status 2>/dev/null || true)
for s in kafka cassandra jaeger; do
  if ! grep -qE "^$s +running" <<<"$status"; then
    started+=("$s")
  fi
done
stop_started() {
  for s in "${started[@]}"; do bash "$services" stop "$s" || true; done
}
if ((${#started[@]})); then
  trap stop_started EXIT
  # A service this script starts is a throwaway: it starts from empty data, so the
  # topics and keyspaces of earlier runs (thousands of partitions after a while) do
  # not slow its start down.
  for s in "${started[@]}"; do bash "$services" reset-data "$s"; done
  if ((${#started[@]} == 3)); then
    bash "$services" start all
  else
    for s in "${started[@]}"; do bash "$services" start "$s"; done
  fi
fi
eval "$(bash "$services" env)"

# The Autobahn|Testsuite client for the WebSocket conformance test (cached).
bash scripts/autobahn.sh >/dev/null

# Kafka and Cassandra tests fail (they never skip) when these are unreachable.
# nextest (.config/nextest.toml) names and then kills a test that hangs.
cargo nextest run --locked --test-threads "${FERRY_TEST_THREADS:-3}" -E 'not test(/^matrix::/)'
# The fault matrix's short pass (tests/it/matrix.rs, 3-5 minutes): its own Kafka
# and Cassandra, killed in turn under load; run alone, after the suite, so the other
# tests do not share the machine with its outages.
bash scripts/fault-matrix.sh --short
# The fuzz smoke (scripts/fuzz-smoke.sh): an instrumented build of its own (cached
# outside the repo), then every target FERRY_FUZZ_SECS seconds (default 20; 0 skips
# it). The committed seeds are also replayed by the suite above.
if [[ "${FERRY_FUZZ_SECS:-20}" != 0 ]]; then
  FERRY_FUZZ_SECS="${FERRY_FUZZ_SECS:-20}" bash scripts/fuzz-smoke.sh
fi
# nextest does not run doctests.
cargo test --doc --locked
# The TypeScript client against a real ferry in Node, and the chat demo in Chromium.
bash scripts/test-web.sh
# The server API against its OpenAPI document: schemathesis (PyPI, cached under
# ~/.cache/ferry) generates requests and checks every response against the document.
FERRY_BIN=$PWD/target/debug/ferry bash scripts/api-contract.sh
# A seconds-long run of every ferry-bench scenario (ferry and its peers): the load
# generator keeps working; it asserts delivery, not speed.
bash scripts/bench-smoke.sh
