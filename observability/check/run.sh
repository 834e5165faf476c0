#!/usr/bin/env bash
# Checks the observability assets, installing what it needs into .tools/ and node_modules:
# - promtool (Debian's prometheus package, unpacked, not installed): the Prometheus config,
#   the alert rules, and their unit tests, and every dashboard expression parsed as PromQL;
# - the Grafana dashboards against Grafana's published schema (@grafana/schema, tsc);
# - compose.yaml (Debian's docker-compose: `config`, offline, no engine) and the Prometheus
#   configuration it mounts, with the same rules.
set -euo pipefail
cd "$(dirname "$0")/../.."

. observability/check/tools.sh
PROMTOOL="$(prometheus_bin promtool)"
(
    cd observability/prometheus
    "$PROMTOOL" check config prometheus.yml
    "$PROMTOOL" check rules rules.yml
    "$PROMTOOL" test rules rules.test.yml
)
# compose.yaml's Prometheus: its config with the rules mounted beside it, as in the container.
compose_prom="$(mktemp -d)"
cp observability/compose/prometheus.yml observability/prometheus/rules.yml "$compose_prom/"
(cd "$compose_prom" && "$PROMTOOL" check config prometheus.yml)
rm -rf "$compose_prom"
if ! command -v docker-compose >/dev/null; then
    echo "observability check: installing Debian's docker-compose (to validate compose.yaml offline)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null 2>&1 \
        || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
fi
docker-compose -f compose.yaml config -q
# Every file and directory it mounts from the repository exists.
for mounted in $(grep -oE '\./[a-z][^:]+' compose.yaml); do
    [ -e "$mounted" ] || { echo "compose.yaml mounts $mounted, which does not exist" >&2; exit 1; }
done
echo "compose.yaml: $(docker-compose -f compose.yaml config --services | wc -l) services valid"
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
