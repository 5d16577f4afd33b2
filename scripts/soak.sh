#!/usr/bin/env bash
# Soak (not part of CI): ferry on Kafka + Cassandra under a moderate, steady load of
# real WebSocket clients for 30 minutes, sampling its RSS, open file descriptors and
# consumer lag; fails if any of them grows. Appends its verdict to docs/benchmarks-history.md.
#
#   bash scripts/soak.sh [--minutes 30] [--pairs 10] [--rate 10] [--sample-secs 30]
#
# Kafka and Cassandra: FERRY_TEST_KAFKA / FERRY_TEST_CQL, else the instances of
# scripts/services/services.sh (start them first). FERRY_SOAK_PROFILE=dev soaks a
# debug build (quicker to build; the default is the release build).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${FERRY_TEST_KAFKA:-}" ]]; then
  eval "$(bash scripts/services/services.sh env)"
fi
profile="${FERRY_SOAK_PROFILE:-release}"
[[ "$profile" == release ]] && profile=bench
exec nice -n 10 cargo bench --profile "$profile" --bench soak -- soak --kafka "$@"
