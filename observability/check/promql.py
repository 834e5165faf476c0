#!/usr/bin/env python3
"""Writes every Prometheus expression of the Grafana dashboards (panels at every depth, rows
included) as a recording rule, so `promtool check rules` parses each one as PromQL. Grafana's
interval variables become durations and the board's own query variables their "All" value; any
other `$variable` fails the check, as nothing would substitute it."""
import json
import pathlib
import re
import sys

VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}


def panels(items):
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def main(out):
    rules = []
    for board in sorted(pathlib.Path("observability/grafana/dashboards").glob("*.json")):
        document = json.loads(board.read_text())
        own = {
            "$" + v["name"]: v.get("allValue", ".*")
            for v in document.get("templating", {}).get("list", [])
            if v.get("type") == "query"
        }
        for panel in panels(document["panels"]):
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") != "prometheus":
                    continue
                expr = target["expr"]
                for name, value in {**VARIABLES, **own}.items():
                    expr = expr.replace(name, value)
                left = re.findall(r"\$\w+", expr)
                if left:
                    sys.exit(f"{board.name}: panel {panel.get('title')!r} uses {left}, which nothing substitutes")
                rules.append({"record": f"dashboard:{board.stem.replace('-', '_')}:{len(rules)}", "expr": expr})
    if not rules:
        sys.exit("no dashboard expression found")
    pathlib.Path(out).write_text(json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}, indent=1))
    print(f"{len(rules)} dashboard expressions")


main(sys.argv[1])
