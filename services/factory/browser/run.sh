#!/usr/bin/env bash
# The web console in a real browser: installs Debian's chromium (as the other checks install
# their tools) and playwright-core, starts `factory up` on free ports with its own nats-server
# and data directory, and runs console.test.mjs against it. Screenshots go to
# $SHOTS (a temporary directory unless given; `SHOTS=docs/img` refreshes the README's).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
if [ -z "${CHROMIUM:-}" ]; then
  CHROMIUM="$(command -v chromium || true)"
  if [ -z "$CHROMIUM" ]; then
    echo "browser check: installing Debian's chromium" >&2
    { apt-get install -y -qq chromium >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq chromium >/dev/null; }; }
    CHROMIUM="$(command -v chromium)"
  fi
fi
export CHROMIUM
(
  cd services/factory/browser
  if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/nats ]; then
    npm ci --no-audit --no-fund --loglevel=error
  fi
)
. services/factory/scripts/factory-up.sh
start_factory_up "browser check"
export SHOTS="${SHOTS:-$FACTORY_DATA/shots}"
mkdir -p "$SHOTS"
FACTORY_URL="$FACTORY_HTTP" NATS_URL="$FACTORY_NATS" node services/factory/browser/console.test.mjs || {
  echo "browser check: the factory's log:"; tail -50 "$FACTORY_LOG"; exit 1; }
