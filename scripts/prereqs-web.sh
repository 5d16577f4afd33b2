#!/usr/bin/env bash
# What scripts/test-web.sh needs beyond the Rust build: Debian's chromium (driven by
# puppeteer-core; no browser is ever downloaded) and Node.js >= 20.10 with npm.
set -euo pipefail
if ! dpkg -s chromium >/dev/null 2>&1; then
  echo "installing chromium" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! /usr/bin/chromium --headless=new --no-sandbox --disable-gpu --version >/dev/null 2>&1; then
  echo "prereqs-web: /usr/bin/chromium is installed but does not run; fix: apt-get install --reinstall chromium" >&2
  exit 1
fi
if ! node --version >/dev/null 2>&1 || ! npm --version >/dev/null 2>&1; then
  echo "prereqs-web: Node.js >= 20.10 and npm are needed and must run; fix: apt-get install nodejs npm (or nodejs.org / NodeSource)" >&2
  exit 1
fi
