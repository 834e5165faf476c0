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
cargo build -q -p factory
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
nats=$(free_port); monitor=$(free_port); http=$(free_port)
data=$(mktemp -d)
export SHOTS="${SHOTS:-$data/shots}"
mkdir -p "$SHOTS"
log="$data/factory.log"
target/debug/factory up --data-dir "$data/store" --nats-port "$nats" --nats-monitor-port "$monitor" \
  --http "127.0.0.1:$http" --log warn >"$log" 2>&1 &
pid=$!
cleanup() { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; [ "$SHOTS" = "$data/shots" ] && rm -rf "$data" || rm -rf "$data/store"; }
trap cleanup EXIT
for _ in $(seq 1 150); do
  if curl -sf "http://127.0.0.1:$http/readyz" >/dev/null; then break; fi
  sleep 0.2
done
curl -sf "http://127.0.0.1:$http/readyz" >/dev/null || { echo "browser check: factory up did not become ready"; cat "$log"; exit 1; }
FACTORY_URL="http://127.0.0.1:$http" NATS_URL="nats://127.0.0.1:$nats" node services/factory/browser/console.test.mjs || {
  echo "browser check: the factory's log:"; tail -50 "$log"; exit 1; }
