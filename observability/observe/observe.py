#!/usr/bin/env python3
"""Drives a mixed workload at a running `factory up`, then asks the Prometheus scraping it
whether every alert rule evaluates and what every dashboard query finds (run.sh starts both).

Fails when a rule's health is not `ok`, a query errors, or a query over the factory's own
metrics finds no series — unless the table below says why it may be empty after a short run.
Queries over the NATS exporter's metrics (`gnatsd_*`, `jetstream_*`) are evaluated but not
required to find data: the exporter is not installable here.

usage: observe.py --prometheus URL --factory URL [--seconds N] [--img DIR]
"""
import argparse
import json
import pathlib
import random
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

# Queries that may rightly find nothing after a short run on a laptop, and why.
MAY_BE_EMPTY = {
    "factory_archive_purged_events_total": "compaction runs every 10 minutes; none within the run",
    "factory_archive_runs_total": "compaction runs every 10 minutes; none within the run",
    "factory_archive_last_run_timestamp_seconds": "compaction runs every 10 minutes; none within the run",
    "factory_projection_rebuilds_total": "counts rebuilds; the workload starts one, whose counter may not be scraped yet",
    "factory_occ_conflicts_total": "needs two writers racing on one aggregate inside one append; one process serialises most",
}
EXPORTER = ("gnatsd_", "jetstream_")


def call(method, url, body=None, headers=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"content-type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def workload(factory, seconds):
    """Commands of every kind, some of them failing, for `seconds`; returns the statuses seen."""
    post = lambda path, body, headers=None: call("POST", factory + path, body, headers)[0]
    post("/v1/commands/product/widget/define", {"name": "Widget", "bom": [{"sku": "bolt", "qty": 4}]})
    post("/v1/commands/product/gizmo/define", {"name": "Gizmo", "bom": [{"sku": "unobtainium", "qty": 1}]})
    seen = {}
    stop = time.time() + seconds
    lock = threading.Lock()

    def worker(n):
        i = 0
        while time.time() < stop:
            i += 1
            order = f"o-{n}-{i}"
            product = "gizmo" if i % 4 == 0 else "widget"  # one order in four cannot be built
            for path, body in [
                (f"/v1/commands/stock/bolt@main/receive", {"qty": 8}),
                (f"/v1/commands/order/{order}/plan", {"product_id": product, "qty": 1, "warehouse": "main"}),
                (f"/v1/commands/order/{order}/start", {}),
                (f"/v1/commands/stock/bolt@main/transfer", {"qty": 1, "to": "east"}),
                (f"/v1/commands/stock/bolt@east/ship", {"qty": 10**6}),  # rejected: not enough
                (f"/v1/commands/stock/bolt@east/receive", {"qty": 1}),  # races the transfers into east
            ]:
                status = post(path, body)
                with lock:
                    seen[status] = seen.get(status, 0) + 1
            # A client retrying a command it got no answer to: answered with the first outcome.
            for _ in range(2):
                status = post(f"/v1/commands/stock/nut@main/receive", {"qty": 1}, {"idempotency-key": f"retry-{n}-{i}"})
                with lock:
                    seen[status] = seen.get(status, 0) + 1
            for path in ["/v1/views/stock?limit=10", "/v1/views/orders?limit=10", "/status"]:
                status = call("GET", factory + path)[0]
                with lock:
                    seen[status] = seen.get(status, 0) + 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    # A view rebuilt while the load runs.
    time.sleep(seconds / 3)
    call("POST", factory + "/v1/projections/stock/rebuild", {})
    for t in threads:
        t.join()
    return seen


def query(prometheus, expr):
    status, body = call("GET", prometheus + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    answer = json.loads(body or b"{}")
    if status != 200 or answer.get("status") != "success":
        return None, answer.get("error", f"HTTP {status}")
    return answer["data"]["result"], None


def panels(items):
    for panel in items:
        yield panel
        yield from panels(panel.get("panels", []))


def dashboard_queries():
    for board in sorted(pathlib.Path("observability/grafana/dashboards").glob("*.json")):
        document = json.loads(board.read_text())
        own = {"$" + v["name"]: v.get("allValue", ".*") for v in document["templating"]["list"] if v.get("type") == "query"}
        for panel in panels(document["panels"]):
            for target in panel.get("targets", []):
                if target.get("datasource", {}).get("type") != "prometheus":
                    continue
                expr = target["expr"]
                # Rates over 15 scrapes of 1 s; ranges as a short run has them.
                for name, value in {"$__rate_interval": "15s", "$__interval": "5s", "$__range": "5m", **own}.items():
                    expr = expr.replace(name, value)
                yield board.stem, panel.get("title"), expr.replace("[1h]", "[5m]")


def draw(prometheus, directory, start, end):
    """The README's picture: commands/s by aggregate type and orders by saga outcome, from the
    run's data, with matplotlib (installed into .tools/observe on demand)."""
    sys.path.insert(0, str(pathlib.Path(".tools/observe").resolve()))
    try:
        import matplotlib
    except ImportError:
        import subprocess

        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                               "--target", ".tools/observe", "matplotlib==3.10.7"])
        import importlib

        importlib.invalidate_caches()
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(expr, legend):
        params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 1})
        _, body = call("GET", prometheus + "/api/v1/query_range?" + params)
        for result in json.loads(body)["data"]["result"]:
            points = [(float(t) - start, float(v)) for t, v in result["values"]]
            yield legend.format(**result["metric"]), points

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for ax, title, expr, legend in [
        (axes[0], "Commands per second by aggregate type", "sum by (aggregate_type) (rate(factory_commands_total[15s]))", "{aggregate_type}"),
        (axes[1], "Orders by saga outcome, per second", "sum by (outcome) (rate(factory_saga_orders_total[15s]))", "{outcome}"),
    ]:
        for label, points in series(expr, legend):
            ax.plot([p[0] for p in points], [p[1] for p in points], label=label)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("seconds into the run")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = pathlib.Path(directory) / "dashboard-commands-and-sagas.png"
    fig.savefig(out, dpi=110)
    print(f"drew {out}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--factory", required=True)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--img")
    args = parser.parse_args()

    deadline = time.time() + 60
    while not (query(args.prometheus, 'up{job="factory"} == 1')[0] or []):
        if time.time() > deadline:
            sys.exit("observe: Prometheus never scraped factory up")
        time.sleep(0.5)
    start = time.time()
    seen = workload(args.factory, args.seconds)
    time.sleep(5)  # a few more scrapes and rule evaluations
    end = time.time()
    print(f"observe: {sum(seen.values())} requests in {args.seconds} s, by status {dict(sorted(seen.items()))}")

    failures = []
    status, body = call("GET", args.prometheus + "/api/v1/rules")
    groups = json.loads(body)["data"]["groups"] if status == 200 else []
    rules = [r for g in groups for r in g["rules"]]
    if not rules:
        failures.append("no alert rule loaded")
    for rule in rules:
        state = rule.get("state", "-")
        print(f"  rule {rule['name']:<30} health {rule['health']:<8} state {state}")
        if rule["health"] != "ok":
            failures.append(f"rule {rule['name']}: {rule.get('lastError')}")

    empty_ok = 0
    for board, title, expr in dashboard_queries():
        result, error = query(args.prometheus, expr)
        if error:
            failures.append(f"{board} / {title}: {error} ({expr})")
            continue
        if result:
            continue
        reasons = [why for name, why in MAY_BE_EMPTY.items() if name in expr]
        if reasons or any(p in expr for p in EXPORTER):
            empty_ok += 1
            print(f"  empty, as expected: {board} / {title} ({reasons[0] if reasons else 'the NATS exporter is not running here'})")
        else:
            failures.append(f"{board} / {title}: no data ({expr})")
    total = sum(1 for _ in dashboard_queries())
    print(f"observe: {len(rules)} rules evaluated; {total} dashboard queries, {total - empty_ok} with data")
    if args.img:
        draw(args.prometheus, args.img, start, end)
    if failures:
        for failure in failures:
            print(f"observe: {failure}", file=sys.stderr)
        sys.exit(1)


main()
