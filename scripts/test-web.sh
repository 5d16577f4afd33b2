#!/usr/bin/env bash
# The web client's tests: the TypeScript library against a real ferry in Node, and
# the /demo page in Debian's headless Chromium. Needs Node >= 20.10 with npm, and
# /usr/bin/chromium (apt-get install chromium); fails when either is missing.
# Screenshots land in target/web-artifacts/.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-web: $*" >&2; exit 1; }
command -v node >/dev/null || fail "node is missing (apt-get install nodejs npm)"
command -v npm >/dev/null || fail "npm is missing (apt-get install npm)"
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=10)?0:1)' \
  || fail "Node $(node --version) is too old: 20.10 or later is needed"
chromium=${CHROMIUM:-/usr/bin/chromium}
[[ -x $chromium ]] || fail "no Chromium at $chromium (apt-get install chromium, or set CHROMIUM)"

# The binary the tests run (the debug build, as cargo test uses).
cargo build --locked --bin ferry
export FERRY_BIN=$PWD/target/debug/ferry CHROMIUM=$chromium

cd clients/ts
npm ci --no-audit --no-fund
npm run build
# The committed demo bundle must be what the sources build (ferry embeds it).
node scripts/bundle-demo.mjs >/dev/null 2>&1
git diff --quiet -- demo/dist/demo.js \
  || fail "clients/ts/demo/dist/demo.js is stale: run 'npm run bundle-demo' in clients/ts and commit it"
# Node 20 needs the flag for its built-in WebSocket; Node 22+ has it on by default.
flag=""
node -e 'process.exit(typeof WebSocket === "function" ? 0 : 1)' || flag=--experimental-websocket
node $flag --test --test-concurrency=1 test/*.test.mjs
