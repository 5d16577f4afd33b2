#!/usr/bin/env bash
# The server API checked against its contract: schemathesis (a property-based OpenAPI
# tester, from PyPI) generates requests from schemas/openapi.yaml and runs them against
# a live ferry (the embedded backend, a fresh data directory), failing on any response
# the document does not describe (an undocumented status, a body of the wrong shape, a
# schema-valid request refused, a 5xx).
#
#   bash scripts/api-contract.sh            # builds ferry (debug), installs schemathesis, runs
#   FERRY_BIN=path bash scripts/api-contract.sh   # an existing binary
#
# schemathesis lives in a virtualenv under ${FERRY_CACHE:-$HOME/.cache/ferry}
# (never in the repo); the installer checks that what it found runs, and names the
# missing piece in one line when it does not.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
CACHE="${FERRY_CACHE:-$HOME/.cache/ferry}"
VENV="$CACHE/venv-schemathesis"
# Generated cases per operation; the default is schemathesis' own (100).
MAX_EXAMPLES="${FERRY_API_EXAMPLES:-100}"

fail() { echo "api-contract: $*" >&2; exit 1; }
# shellcheck source=lib/python.sh
source scripts/lib/python.sh

# --- install ------------------------------------------------------------------

install_schemathesis() {
  local marker="$VENV/.schemathesis-$SCHEMATHESIS_VERSION"
  if [[ -f $marker ]] && "$VENV/bin/st" --version >/dev/null 2>&1; then return; fi
  # A working Python 3.9+ (pyenv's versions tried by their real paths), and a venv
  # made again when the one cached does not run (scripts/lib/python.sh).
  mkdir -p "$CACHE"
  make_venv "$VENV" "api-contract (schemathesis)"
  "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1 \
    || fail "the virtualenv at $VENV has no pip (apt-get install python3-venv, or python3 -m ensurepip)"
  echo "api-contract: pip install schemathesis==$SCHEMATHESIS_VERSION into $VENV" >&2
  PIP_CACHE_DIR="$CACHE/pip" "$VENV/bin/pip" install -q --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" >"$CACHE/schemathesis-install.log" 2>&1 \
    || fail "pip could not install schemathesis==$SCHEMATHESIS_VERSION (no PyPI access?); see $CACHE/schemathesis-install.log"
  "$VENV/bin/st" --version >/dev/null 2>&1 \
    || fail "schemathesis installed but '$VENV/bin/st --version' does not run: $("$VENV/bin/st" --version 2>&1 | tail -1)"
  touch "$marker"
}

if [[ ${1:-} == install ]]; then
  install_schemathesis
  "$VENV/bin/st" --version
  exit 0
fi
install_schemathesis

# --- a live ferry -------------------------------------------------------------

if [[ -z ${FERRY_BIN:-} ]]; then
  cargo build --locked --bin ferry
  FERRY_BIN=$PWD/target/debug/ferry
fi
[[ -x $FERRY_BIN ]] || fail "no ferry binary at $FERRY_BIN"
data=$(mktemp -d "${TMPDIR:-/tmp}/ferry-api-contract.XXXXXX")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
FERRY_DATA_DIR=$data FERRY_SERVER__LISTEN=127.0.0.1:$port FERRY_TELEMETRY__LOG_LEVEL=warn \
  "$FERRY_BIN" serve >"$data/ferry.log" 2>&1 &
pid=$!
cleanup() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 1 600); do
  curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$data/ferry.log" >&2; fail "ferry exited before it was ready"; }
  sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/readyz" >/dev/null || fail "ferry was not ready within 60 s (log: $data/ferry.log)"
token=$(cat "$data/dev-service-token")

# --- the run ------------------------------------------------------------------

report="$PWD/target/api-contract"
mkdir -p "$report"
# schemathesis' default checks (an undocumented status, content type or body; a
# schema-valid request refused as malformed; schema-invalid data accepted; any 5xx),
# every phase, a fixed seed so that a failure is reproducible; no response may take
# the server longer than 10 s.
# scripts/api_contract_hooks.py: the one rule the document states in prose only.
PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" SCHEMATHESIS_HOOKS=api_contract_hooks \
  "$VENV/bin/st" run schemas/openapi.yaml \
  --url "http://127.0.0.1:$port/api/v1" \
  --header "Authorization: Bearer $token" \
  --max-examples "$MAX_EXAMPLES" \
  --seed "${FERRY_API_SEED:-21}" \
  --request-timeout 10 \
  --report junit --report-dir "$report" \
  --no-color
