#!/usr/bin/env bash
# A seconds-long run of every ferry-bench scenario against ferry (embedded, and Kafka +
# Cassandra with two pods where the scenario has one) and the peers, with --check: fails
# unless every expected message arrived and nothing failed. It asserts that the load
# generator and the peers keep working, not speed. Needs Kafka and Cassandra running
# (scripts/test.sh starts them; FERRY_TEST_KAFKA / FERRY_TEST_CQL point at them).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bench.sh fetch-centrifugo
cargo build --locked -p ferry -p ferry-bench
eval "$(bash scripts/services/services.sh env)"
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

run() {
  echo "== ferry-bench $*"
  target/debug/ferry-bench --ferry target/debug/ferry \
    --centrifugo "${FERRY_CACHE:-$HOME/.cache/ferry}/bin/centrifugo" \
    --out "target/ferry-bench/smoke-$1.json" --check "$@"
}

run idle --conns 50 --rest-secs 1 --backend embedded,kafka --peers centrifugo,bare
run chat --users 20 --rates 40 --secs 2 --drain-secs 60 --backend embedded,kafka \
  --peers centrifugo,bare,rdkafka --ceiling-records 2000
run fanout --members 10 --deliveries 90 --secs 2 --backend embedded,kafka --peers centrifugo,bare
run storm --clients 40 --msgs 2 --backend embedded,kafka
run delay --senders 4 --delays 1,2 --msgs 2 --backend embedded
run ack --msgs 50 --backend embedded --peers centrifugo
# The victim gets every answer while one connection of each flooder kind floods.
run flood --requests 40 --conns 1 --settle-secs 1 --backend embedded
echo "bench smoke: every scenario delivered everything"
