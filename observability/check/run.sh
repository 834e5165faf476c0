#!/usr/bin/env bash
# Checks the observability assets, installing what it needs into .tools/ and node_modules:
# - promtool (Debian's prometheus package, unpacked, not installed): the Prometheus config,
#   the alert rules, and their unit tests, and every dashboard expression parsed as PromQL;
# - the Grafana dashboards against Grafana's published schema (@grafana/schema, tsc).
set -euo pipefail
cd "$(dirname "$0")/../.."
TOOLS="$PWD/.tools"

PROMTOOL="$(command -v promtool || true)"
if [ -z "$PROMTOOL" ]; then
    PROMTOOL="$TOOLS/prometheus/usr/bin/promtool"
    if [ ! -x "$PROMTOOL" ]; then
        echo "observability check: fetching Debian's prometheus package into .tools/prometheus" >&2
        tmp="$(mktemp -d)"
        (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download prometheus >/dev/null; }; })
        mkdir -p "$TOOLS/prometheus"
        dpkg -x "$tmp"/prometheus_*.deb "$TOOLS/prometheus"
        rm -rf "$tmp"
    fi
fi
(
    cd observability/prometheus
    "$PROMTOOL" check config prometheus.yml
    "$PROMTOOL" check rules rules.yml
    "$PROMTOOL" test rules rules.test.yml
)
# Every dashboard expression parsed as PromQL (as a recording rule; YAML is a superset of JSON).
exprs="$(mktemp --suffix=.yml)"
python3 observability/check/promql.py "$exprs"
"$PROMTOOL" check rules "$exprs"
rm -f "$exprs"

(
    cd observability/check
    if [ ! -d node_modules/@grafana/schema ]; then
        npm ci --no-audit --no-fund --loglevel=error
    fi
    npm run --silent check
)
echo "observability: Prometheus config, rules and rule tests, and $(ls observability/grafana/dashboards/*.json | wc -l) dashboards checked"
