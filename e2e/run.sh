#!/usr/bin/env bash
# Browser tests of the admin page (issue 6): installs what they need when it is missing
# (Debian's chromium, openssl, the npm packages of package-lock.json), builds the release binary
# unless MIA_WEBHOOKS_BIN names one, and runs them with node's test runner.
#
#   e2e/run.sh                                   # from anywhere
#   MIA_WEBHOOKS_BIN=/path/to/mia-webhooks e2e/run.sh
#   MIA_E2E_SCREENSHOTS=/tmp/shots e2e/run.sh    # screenshots elsewhere than docs/screenshots
set -euo pipefail
cd "$(dirname "$0")"

# Playwright drives Debian's Chromium; it must never download a browser of its own.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "e2e: missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
    exit 1
  fi
  echo "e2e: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "e2e: node and npm are needed (Node.js 20 or later)" >&2
  exit 1
fi

if [ ! -d node_modules/playwright-core ] || ! npm ls --silent >/dev/null 2>&1; then
  echo "e2e: npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

if [ -z "${MIA_WEBHOOKS_BIN:-}" ]; then
  echo "e2e: cargo build --release -p mia-webhooks"
  (cd .. && cargo build --release -p mia-webhooks)
  MIA_WEBHOOKS_BIN="$(cd .. && pwd)/target/release/mia-webhooks"
fi
export MIA_WEBHOOKS_BIN
echo "e2e: testing $MIA_WEBHOOKS_BIN with $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"

exec node --test --test-reporter=spec
