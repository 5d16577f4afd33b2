#!/usr/bin/env bash
# One benchmark scenario, one command: builds ferry and ferry-bench (release), fetches
# the peer Centrifugo v6.9.1 (go install, cached in ~/.cache/ferry/bin), starts Kafka and
# Cassandra when a Kafka run needs them (and stops what it started), then runs
#
#   target/release/ferry-bench <scenario> [options]     (see BENCHMARKS.md for each row)
#
# e.g.  bash scripts/bench.sh idle --conns 1000,5000,15000
#       bash scripts/bench.sh chat --backend embedded,kafka     (kafka: two pods; kafka1: one)
#       bash scripts/bench.sh fetch-centrifugo            (only fetch the peer)
# Load goes only to 127.0.0.0/8; every run is bounded in count and time.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${FERRY_CACHE:-$HOME/.cache/ferry}"
BIN="$CACHE/bin"
CENTRIFUGO_PKG="github.com/centrifugal/centrifugo/v6@v6.9.1"
# Changing how it is built changes the stamp, so a cached binary is rebuilt.
CENTRIFUGO_STAMP="$CENTRIFUGO_PKG version-ldflags"
PROFILE="${FERRY_BENCH_PROFILE:-release}"

fetch_centrifugo() {
  local stamp="$BIN/.centrifugo.version"
  if [[ -x "$BIN/centrifugo" && -f "$stamp" && "$(cat "$stamp")" == "$CENTRIFUGO_STAMP" ]]; then
    return
  fi
  command -v go >/dev/null || { echo "bench.sh: go not found (needed for Centrifugo)" >&2; exit 1; }
  echo "bench.sh: go install $CENTRIFUGO_PKG" >&2
  mkdir -p "$BIN"
  GOBIN="$BIN" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" \
    GOFLAGS="-buildvcs=false -modcacherw" CGO_ENABLED=0 \
    nice go install -trimpath \
    -ldflags "-s -w -X github.com/centrifugal/centrifugo/v6/internal/build.Version=${CENTRIFUGO_PKG##*@v}" \
    "$CENTRIFUGO_PKG"
  echo "$CENTRIFUGO_STAMP" >"$stamp"
}

if [[ "${1:-}" == fetch-centrifugo ]]; then
  fetch_centrifugo
  exit 0
fi

args=("$@")
peers="centrifugo,bare,rdkafka"
for ((i = 0; i < ${#args[@]}; i++)); do
  [[ "${args[$i]}" == --peers ]] && peers="${args[$((i + 1))]:-}"
  [[ "${args[$i]}" == --peers=* ]] && peers="${args[$i]#--peers=}"
done
[[ "$peers" == *centrifugo* ]] && fetch_centrifugo

if [[ "$PROFILE" == release ]]; then
  nice cargo build --release --locked -p ferry -p ferry-bench
else
  nice cargo build --locked -p ferry -p ferry-bench
fi

services=scripts/services/services.sh
if [[ " ${args[*]} " == *kafka* ]]; then
  started=()
  status=$(bash "$services" status 2>/dev/null || true)
  for s in kafka cassandra; do
    grep -qE "^$s +running" <<<"$status" || started+=("$s")
  done
  stop_started() { for s in "${started[@]}"; do bash "$services" stop "$s" || true; done; }
  trap stop_started EXIT
  for s in "${started[@]}"; do bash "$services" start "$s"; done
fi
eval "$(bash "$services" env)"

# Sockets for 15k connections per process, and loopback source addresses 127.0.0.2…
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"target/$PROFILE/ferry-bench" --centrifugo "$BIN/centrifugo" "${args[@]}"
