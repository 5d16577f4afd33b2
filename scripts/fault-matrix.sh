#!/usr/bin/env bash
# The fault matrix (tests/it/matrix.rs): ferry's gateway and sequencer pods on their
# own Kafka broker and Cassandra node (started on free ports in a temporary directory,
# never the shared instances), under load from real WebSocket clients, while a
# gateway, a sequencer, the broker, the database, and the broker then the database are
# killed with SIGKILL in turn and restarted. The database runs its default periodic
# commit log and comes back without its last seconds of writes (its files of 3 s before
# are put back), which the sequencer's durability horizon applies again from the log. Prints sent / acked / lost / duplicated per phase and fails on any
# lost or duplicated acked message, seq gap, message missing on an online device, or
# lost pending notice or delayed message.
#
#   bash scripts/fault-matrix.sh            # the full pass (~10 minutes)
#   bash scripts/fault-matrix.sh --short    # the short pass `scripts/test.sh` runs too (~5 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
services=scripts/services/services.sh
bash "$services" fetch kafka
bash "$services" fetch cassandra
bash "$services" fetch cqlsh
mode=full
[[ "${1:-}" == --short ]] && mode=short
FERRY_MATRIX=$mode exec nice -n 10 cargo test --locked --test it matrix:: -- --nocapture
