#!/usr/bin/env bash
# What scripts/test-web.sh needs beyond the Rust build: Debian's chromium (driven by
# puppeteer-core; no browser is ever downloaded) and Node.js >= 20.10 with npm.
set -euo pipefail
if ! dpkg -s chromium >/dev/null 2>&1; then
  echo "installing chromium" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "prereqs-web: Node.js >= 20.10 and npm are needed (e.g. from nodejs.org or NodeSource)" >&2
  exit 1
fi
