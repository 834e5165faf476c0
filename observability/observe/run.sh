#!/usr/bin/env bash
# `make observe`: the dashboards and alert rules evaluated on real data. Starts `factory up`
# (its own nats-server, free ports) and Debian's Prometheus (unpacked into .tools/, not
# installed) scraping it every second with the alert rules, drives a mixed workload through the
# HTTP API (commands, failing orders, rejections, a rebuild, queries), then asks Prometheus
# for every rule's health and every dashboard query's result (observe.py). Fails when a rule
# cannot be evaluated, a query errors, or a query over the factory's metrics finds no data.
#
#   observability/observe/run.sh            (make test runs it)
#   IMG=docs/img observability/observe/run.sh   also redraws the README's panel picture
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
. observability/check/tools.sh
PROMETHEUS="$(prometheus_bin prometheus)"
. services/factory/scripts/factory-up.sh
start_factory_up observe
work="$FACTORY_DATA/prometheus"
mkdir -p "$work"
target="${FACTORY_HTTP#http://}"
cat > "$work/prometheus.yml" <<CONFIG
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - $PWD/observability/prometheus/rules.yml
scrape_configs:
  - job_name: factory
    static_configs:
      - targets: ["$target"]
CONFIG
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$PROMETHEUS" --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/data" \
  --web.listen-address="127.0.0.1:$port" --log.level=warn >"$work/prometheus.log" 2>&1 &
PROM_PID=$!
trap 'kill "$PROM_PID" 2>/dev/null || true; wait "$PROM_PID" 2>/dev/null || true; kill "$FACTORY_PID" 2>/dev/null || true; wait "$FACTORY_PID" 2>/dev/null || true; rm -rf "$FACTORY_DATA"' EXIT
python3 observability/observe/observe.py --prometheus "http://127.0.0.1:$port" --factory "$FACTORY_HTTP" \
  --seconds "${LOAD_SECONDS:-30}" ${IMG:+--img "$IMG"}
