#!/usr/bin/env python3
"""Writes the Grafana dashboards (grafana/dashboards/*.json) from the panel lists below.

Run it after changing a panel; `make test` type-checks the JSON against @grafana/schema and
checks that every metric a panel names exists in the running services.
"""
import json
import os
import re

# Every panel reads the Prometheus data source the dashboard's `datasource` variable picks.
PROM = {"type": "prometheus", "uid": "${datasource}"}
LOKI = {"type": "loki", "uid": "loki"}
TEMPO = {"type": "tempo", "uid": "tempo"}


# A metric selector: a factory or NATS metric name, with or without its matchers.
SELECTOR = re.compile(r"\b((?:factory|nats|gnatsd|jetstream|process)_[a-z_]+|up)\b(\{[^}]*\})?(?!\s*\()")


def in_namespace(expr):
    """Every selector of `expr` restricted to the `namespace` variable (all of them by default;
    series without the label, as from a local `factory up`, match too)."""
    def narrow(m):
        matchers = m.group(2)[1:-1] if m.group(2) else ""
        joined = 'namespace=~"$namespace"' + (", " + matchers if matchers else "")
        return m.group(1) + "{" + joined + "}"
    return SELECTOR.sub(narrow, expr)


def panel(pid, title, exprs, x, y, w=12, h=8, kind="timeseries", unit=None, description=""):
    # Rates over Grafana's own interval (at least four scrapes), not a fixed window; one
    # namespace at a time when several run the factory.
    exprs = [(in_namespace(e.replace("[1m]", "[$__rate_interval]").replace("[5m]", "[$__rate_interval]")), l) for e, l in exprs]
    targets = [
        {"refId": chr(ord("A") + i), "datasource": PROM, "expr": expr, "legendFormat": legend}
        for i, (expr, legend) in enumerate(exprs)
    ]
    defaults = {"unit": unit} if unit else {}
    return {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": PROM,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {},
        "targets": targets,
    }


def logs_panel(pid, title, expr, x, y, w=24, h=10, description=""):
    return {
        "id": pid,
        "type": "logs",
        "title": title,
        "description": description,
        "datasource": LOKI,
        "gridPos": {"h": h, "w": w, "x": x, "y": y},
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showTime": True, "wrapLogMessage": True},
        "targets": [{"refId": "A", "datasource": LOKI, "expr": expr}],
    }


def dashboard(uid, title, description, panels, tags):
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["factory", "jetsource"] + tags,
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "links": [
            {
                "title": "Traces (Tempo)",
                "type": "link",
                "url": "/explore?left=%7B%22datasource%22:%22tempo%22%7D",
                "icon": "external link",
                "tooltip": "Search the factory's traces",
                "tags": [],
                "asDropdown": False,
                "includeVars": False,
                "keepTime": True,
                "targetBlank": True,
            },
        ],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {"text": "prometheus", "value": "prometheus"},
                    "hide": 0,
                    "refresh": 1,
                    "options": [],
                },
                {
                    "name": "namespace",
                    "label": "Namespace",
                    "type": "query",
                    "datasource": PROM,
                    "query": {"query": "label_values(up, namespace)", "refId": "namespaces"},
                    "includeAll": True,
                    "allValue": ".*",
                    "multi": True,
                    "current": {"text": "All", "value": "$__all"},
                    "hide": 0,
                    "refresh": 2,
                    "sort": 1,
                    "options": [],
                },
            ],
        },
        "panels": panels,
    }


overview = dashboard(
    "factory-overview",
    "Factory: commands",
    "Command rate, latency and errors by aggregate type, command and error code; optimistic concurrency conflicts, idempotent replays, append latency; HTTP edge; services answering discovery.",
    [
        panel(1, "Commands per second by aggregate type", [('sum by (aggregate_type) (rate(factory_commands_total[1m]))', "{{aggregate_type}}")], 0, 0, unit="reqps"),
        panel(2, "Command latency p50 / p99 by command", [
            ('histogram_quantile(0.5, sum by (le, aggregate_type, command) (rate(factory_command_duration_seconds_bucket[5m])))', "p50 {{aggregate_type}} {{command}}"),
            ('histogram_quantile(0.99, sum by (le, aggregate_type, command) (rate(factory_command_duration_seconds_bucket[5m])))', "p99 {{aggregate_type}} {{command}}"),
        ], 12, 0, unit="s"),
        panel(3, "Errors by code", [('sum by (aggregate_type, command, code) (rate(factory_commands_total{code!~"succeeded|accepted"}[5m]))', "{{aggregate_type}} {{command}} {{code}}")], 0, 8, unit="reqps",
              description="Rejections (`rejected`) are domain answers; `internal`, `unavailable`, `timeout` and `conflict` are what the error-rate alert counts."),
        panel(4, "Optimistic concurrency conflicts (retried)", [('sum by (aggregate_type) (rate(factory_occ_conflicts_total[5m]))', "{{aggregate_type}}")], 12, 8, unit="ops"),
        panel(5, "Idempotent replays", [('sum by (aggregate_type, source) (rate(factory_idempotent_replays_total[5m]))', "{{aggregate_type}} from {{source}}")], 0, 16, unit="ops"),
        panel(6, "Append latency p99 (JetStream OCC publish)", [('histogram_quantile(0.99, sum by (le, aggregate_type) (rate(factory_append_duration_seconds_bucket[5m])))', "{{aggregate_type}}")], 12, 16, unit="s"),
        panel(7, "HTTP requests by route and status", [('sum by (route, status) (rate(factory_http_requests_total[1m]))', "{{route}} {{status}}")], 0, 24, unit="reqps"),
        panel(8, "HTTP latency p99 by route", [('histogram_quantile(0.99, sum by (le, route) (rate(factory_http_request_duration_seconds_bucket[5m])))', "{{route}}")], 12, 24, unit="s"),
        panel(9, "Instances answering discovery", [('max by (service) (factory_service_instances)', "{{service}}")], 0, 32, w=18, kind="stat"),
        panel(10, "Running versions", [('count by (version) (factory_build_info)', "{{version}}")], 18, 32, w=6, kind="stat",
              description="Processes per build: two versions side by side during a rolling update."),
    ],
    ["commands"],
)

projections = dashboard(
    "factory-projections",
    "Factory: projections",
    "How far behind each view is, how fast it applies events, parked (poison) events and rebuilds.",
    [
        panel(1, "Lag (events not yet applied)", [('max by (view) (factory_projection_lag_events)', "{{view}}")], 0, 0),
        panel(2, "Events applied per second", [('sum by (view) (rate(factory_projection_events_total[1m]))', "{{view}}")], 12, 0, unit="ops"),
        panel(3, "Parked events", [('max by (view) (factory_projection_parked_events)', "{{view}}")], 0, 8, kind="stat",
              description="Events a view could not apply, and those of the same aggregate waiting behind them. Retry with `factory projections retry <view>`."),
        panel(4, "Rebuilds (last hour)", [('sum by (view) (increase(factory_projection_rebuilds_total[1h]))', "{{view}}")], 12, 8, kind="stat"),
        panel(5, "Stream sequence applied", [('max by (view) (factory_projection_last_seq)', "{{view}}")], 0, 16, w=24),
    ],
    ["projections"],
)

sagas = dashboard(
    "factory-sagas",
    "Factory: sagas and async errors",
    "Production orders through the saga: started, reserved, completed, failed by reason, time to failure; notifications; the failed commands' log records, whose trace ids open the trace in Tempo.",
    [
        panel(1, "Orders by outcome", [('sum by (outcome) (rate(factory_saga_orders_total[5m]))', "{{outcome}}")], 0, 0, unit="ops"),
        panel(2, "Failures by reason", [('sum by (reason) (increase(factory_saga_failures_total[1h]))', "{{reason}}")], 12, 0, kind="bargauge"),
        panel(3, "Time from OrderStarted to OrderFailed", [
            ('histogram_quantile(0.5, sum by (le) (rate(factory_saga_time_to_failure_seconds_bucket[5m])))', "p50"),
            ('histogram_quantile(0.99, sum by (le) (rate(factory_saga_time_to_failure_seconds_bucket[5m])))', "p99"),
        ], 0, 8, unit="s"),
        panel(4, "Stock commands sent by the saga", [('sum by (command, outcome) (rate(factory_saga_steps_total[5m]))', "{{command}} {{outcome}}")], 12, 8, unit="ops"),
        panel(5, "Notifications by status", [('sum by (status) (rate(factory_notifications_total[5m]))', "{{status}}")], 0, 16, unit="ops"),
        panel(6, "Log records shipped by level", [('sum by (level) (rate(factory_logs_shipped_total[5m]))', "{{level}}")], 12, 16, unit="ops"),
        logs_panel(7, "Failed commands (click a trace_id to open the trace)", '{service_name=~"factory.*"} | json | message=~"production order failed|command failed asynchronously"', 0, 24,
                   description="From Loki (the collector's logs pipeline); the Loki data source links trace_id to Tempo."),
    ],
    ["sagas", "errors"],
)

nats = dashboard(
    "factory-nats",
    "Factory: NATS and JetStream",
    "The NATS servers (prometheus-nats-exporter sidecars): connections, message rates, memory, slow consumers; the JetStream streams and consumers of the factory.",
    [
        panel(1, "Client connections per server", [('gnatsd_varz_connections', "{{server_id}}")], 0, 0),
        panel(2, "Messages in / out per second", [
            ('sum(rate(gnatsd_varz_in_msgs[1m]))', "in"),
            ('sum(rate(gnatsd_varz_out_msgs[1m]))', "out"),
        ], 12, 0, unit="ops"),
        panel(3, "Server memory", [('gnatsd_varz_mem', "{{server_id}}")], 0, 8, unit="bytes"),
        panel(4, "Slow consumers", [('sum(gnatsd_varz_slow_consumers)', "slow consumers")], 12, 8, kind="stat"),
        panel(5, "Stream messages", [('max by (stream_name) (jetstream_stream_total_messages)', "{{stream_name}}")], 0, 16),
        panel(6, "Stream bytes", [('max by (stream_name) (jetstream_stream_total_bytes)', "{{stream_name}}")], 12, 16, unit="bytes"),
        panel(7, "Consumer pending (saga, notifier, views)", [('max by (stream_name, consumer_name) (jetstream_consumer_num_pending)', "{{consumer_name}}")], 0, 24),
        panel(8, "Consumer acks pending and redeliveries", [
            ('max by (consumer_name) (jetstream_consumer_num_ack_pending)', "ack pending {{consumer_name}}"),
            ('max by (consumer_name) (jetstream_consumer_num_redelivered)', "redelivered {{consumer_name}}"),
        ], 12, 24),
    ],
    ["nats"],
)

archive = dashboard(
    "factory-archive",
    "Factory: archive and compaction",
    "The bounded event log: hot and archived sizes, how far the archive is behind, compaction runs and the events they moved out of the hot stream.",
    [
        panel(1, "Messages: hot stream and archive", [('max by (tier) (factory_stream_messages)', "{{tier}}")], 0, 0, unit="short",
              description="EVENTS stays bounded by the retention rules; ARCHIVE holds every event."),
        panel(2, "Bytes: hot stream and archive", [('max by (tier) (factory_stream_bytes)', "{{tier}}")], 12, 0, unit="bytes",
              description="As the streams count them (the archive is S2-compressed on disk)."),
        panel(3, "Archive lag (events not yet copied)", [('max(factory_archive_lag_events)', "lag")], 0, 8, unit="short",
              description="Compaction never purges what the archive does not hold; a growing lag holds the hot stream's size up."),
        panel(4, "Events purged from the hot stream per hour", [('sum by (aggregate_type) (increase(factory_archive_purged_events_total[1h]))', "{{aggregate_type}}")], 12, 8, unit="short",
              description="Each is still in the archive; reads go there for it."),
        panel(5, "Compaction runs per hour", [('sum by (outcome) (increase(factory_archive_runs_total[1h]))', "{{outcome}}")], 0, 16, unit="short"),
        panel(6, "Since the last compaction run", [('time() - max(factory_archive_last_run_timestamp_seconds)', "since last run")], 12, 16, unit="s",
              description="The archiver runs every [archive] every (10 min)."),
    ],
    ["archive"],
)

here = os.path.dirname(os.path.abspath(__file__))
for name, board in [("overview", overview), ("projections", projections), ("sagas", sagas), ("nats", nats), ("archive", archive)]:
    with open(os.path.join(here, "dashboards", f"{name}.json"), "w") as f:
        json.dump(board, f, indent=2)
        f.write("\n")
