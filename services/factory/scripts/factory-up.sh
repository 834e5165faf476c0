# Sourced by the checks that need a running `factory up` (conformance/run.sh, browser/run.sh).
#
# start_factory_up <check>: builds the factory, starts `factory up` on free ports with its own
# nats-server and a temporary data directory, waits until it is ready, and stops it and removes
# the directory on exit. Sets FACTORY_HTTP (http://127.0.0.1:<port>), FACTORY_NATS
# (nats://127.0.0.1:<port>), FACTORY_DATA (the directory) and FACTORY_LOG (its log file).
start_factory_up() {
  local check="$1" nats monitor http
  cargo build -q -p factory
  free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
  nats=$(free_port); monitor=$(free_port); http=$(free_port)
  FACTORY_DATA=$(mktemp -d)
  FACTORY_LOG="$FACTORY_DATA/factory.log"
  target/debug/factory up --data-dir "$FACTORY_DATA/store" --nats-port "$nats" --nats-monitor-port "$monitor" \
    --http "127.0.0.1:$http" --log warn >"$FACTORY_LOG" 2>&1 &
  FACTORY_PID=$!
  trap 'kill "$FACTORY_PID" 2>/dev/null || true; wait "$FACTORY_PID" 2>/dev/null || true; rm -rf "$FACTORY_DATA"' EXIT
  FACTORY_HTTP="http://127.0.0.1:$http"
  FACTORY_NATS="nats://127.0.0.1:$nats"
  for _ in $(seq 1 150); do
    if curl -sf "$FACTORY_HTTP/readyz" >/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$check: factory up did not become ready"
  cat "$FACTORY_LOG"
  exit 1
}
