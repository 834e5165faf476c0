//! No dangling panels: every metric a Grafana dashboard or a Prometheus rule names exists in
//! what the running services (or the NATS exporter) expose.
//!
//! - `factory_*`: scraped from `/metrics` of a running factory after real traffic (commands,
//!   a failed order, a parked event, a rebuild), as families declared in the exposition.
//! - `gnatsd_varz_*`: the exporter names these after the numeric fields of the server's
//!   `/varz` (nested keys joined by `_`); checked against `/varz` of a real nats-server.
//! - `jetstream_*`: the exporter names these explicitly (collector/jsz.go); checked against
//!   that list, which cannot be scraped here (the exporter is not on this machine's
//!   registries). The README says so.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use factory::app::{App, AppConfig};
use jetsource_runtime::Shutdown;
use jetsource_testkit::NatsServer;
use serde_json::Value;

/// The JetStream metric names of prometheus-nats-exporter (`-jsz=all`, no `-prefix`).
const EXPORTER_JETSTREAM: &[&str] = &[
    "jetstream_server_jetstream_disabled",
    "jetstream_server_total_streams",
    "jetstream_server_total_consumers",
    "jetstream_server_total_messages",
    "jetstream_server_total_message_bytes",
    "jetstream_server_max_memory",
    "jetstream_server_max_storage",
    "jetstream_stream_total_messages",
    "jetstream_stream_total_bytes",
    "jetstream_stream_first_seq",
    "jetstream_stream_last_seq",
    "jetstream_stream_consumer_count",
    "jetstream_stream_subject_count",
    "jetstream_consumer_num_pending",
    "jetstream_consumer_num_ack_pending",
    "jetstream_consumer_num_redelivered",
    "jetstream_consumer_num_waiting",
    "jetstream_consumer_delivered_consumer_seq",
    "jetstream_consumer_delivered_stream_seq",
    "jetstream_consumer_ack_floor_stream_seq",
    "jetstream_consumer_ack_floor_consumer_seq",
];

/// Metric names in PromQL: identifiers followed by `{`, `[`, `)` or an operator, that are not
/// functions, keywords or label names.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    let mut in_braces = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c == '{' {
            in_braces += 1;
        } else if c == '}' {
            in_braces -= 1;
        } else if c == '"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            let next = expr[i..].trim_start().chars().next();
            let prefixed = ["factory_", "gnatsd_", "jetstream_"].iter().any(|p| word.starts_with(p));
            if in_braces == 0 && prefixed && next != Some('(') {
                names.insert(word.to_owned());
            }
            continue;
        }
        i += 1;
    }
    names
}

/// Sample names a Prometheus text exposition allows: declared families with their suffixes.
fn exposed(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        {
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
        } else if let Some(sample) = line.split(['{', ' ']).next().filter(|s| !s.is_empty() && !s.starts_with('#')) {
            names.insert(sample.to_owned());
        }
    }
    names
}

/// `gnatsd_varz_<path>` for every numeric field of `/varz`.
fn varz_names(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Number(_) => {
            out.insert(prefix.to_owned());
        }
        Value::Object(map) => {
            for (key, value) in map {
                varz_names(value, &format!("{prefix}_{}", key.to_ascii_lowercase()), out);
            }
        }
        _ => {}
    }
}

fn referenced() -> BTreeSet<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../observability");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(root.join("grafana/dashboards")).unwrap() {
        let board: Value = serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        let mut panels: Vec<&Value> = board["panels"].as_array().unwrap().iter().collect();
        // Rows hold panels of their own; every level counts.
        while let Some(panel) = panels.pop() {
            panels.extend(panel["panels"].as_array().into_iter().flatten());
            for target in panel["targets"].as_array().into_iter().flatten() {
                if target["datasource"]["type"] == "prometheus" {
                    names.extend(metric_names(target["expr"].as_str().unwrap()));
                }
            }
        }
    }
    let rules = std::fs::read_to_string(root.join("prometheus/rules.yml")).unwrap();
    for line in rules.lines() {
        names.extend(metric_names(line));
    }
    names
}

#[tokio::test]
async fn every_metric_a_dashboard_or_rule_names_exists() {
    // Arrange: the whole factory, with traffic touching every kind of metric
    let server = NatsServer::start();
    let mut config = AppConfig::new(server.url(), factory::app::all_services());
    config.http = Some("127.0.0.1:0".parse().unwrap());
    let app = App::build(config).await.unwrap();
    // Logs shipped (WARN and above) count in this process's metrics.
    let telemetry = jetsource_telemetry::Telemetry::init(&jetsource_telemetry::TelemetryConfig {
        service: "factory".into(),
        instance: "test".into(),
        filter: Some("off".into()),
        ship: Some("warn".into()),
        env_prefix: "FACTORY".into(),
    })
    .unwrap();
    telemetry.ship_logs(app.client().clone(), Some(std::sync::Arc::clone(app.metrics())));
    let shutdown = Shutdown::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(app.serve(shutdown.clone(), move |addr| {
        let _ = tx.send(addr);
    }));
    let http = rx.await.unwrap().unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    for (subject, body) in [
        ("cmd.product.widget.define", r#"{"name": "W", "bom": [{"sku": "bolt", "qty": 2}]}"#),
        ("cmd.stock.bolt@main.receive", r#"{"qty": 1}"#),
        ("cmd.stock.bolt@main.ship", r#"{"qty": 5}"#),
        ("cmd.order.o-1.plan", r#"{"product_id": "widget", "qty": 3, "warehouse": "main"}"#),
        ("cmd.order.o-1.start", "{}"),
        ("projector.rebuild.products", ""),
    ] {
        client.request(subject, body.into()).await.unwrap();
    }
    let mut key = async_nats::HeaderMap::new();
    key.insert("Idempotency-Key", "twice");
    for _ in 0..2 {
        // (the catalog runs in the scraped process only)
        let gizmo = r#"{"name": "G", "bom": [{"sku": "nut", "qty": 1}]}"#;
        client.request_with_headers("cmd.product.gizmo.define", key.clone(), gizmo.into()).await.unwrap();
    }
    // Another writer moves the product on behind the catalog's back: the catalog's next append
    // meets a newer sequence (an optimistic-concurrency conflict) and retries.
    let js = async_nats::jetstream::new(client.clone());
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in [
        ("ce-specversion", "1.0"),
        ("ce-id", "elsewhere:0"),
        ("ce-source", "/elsewhere"),
        ("ce-type", "factory.product.BomChanged"),
        ("ce-subject", "gizmo"),
        ("ce-time", "2026-11-27T10:00:00Z"),
        ("ce-commandid", "elsewhere"),
    ] {
        headers.insert(name, value);
    }
    let bom = r#"{"bom": [{"sku": "nut", "qty": 3}]}"#;
    js.publish_with_headers("evt.product.gizmo", headers, bom.into()).await.unwrap().await.unwrap();
    let changed = client.request("cmd.product.gizmo.change-bom", r#"{"bom": [{"sku": "nut", "qty": 4}]}"#.into());
    assert!(changed.await.unwrap().headers.is_none(), "the change succeeds after the retry");
    let get = crate::support::http_get;
    get(http.port(), "/v1/views/stock/bolt@main").await;
    let varz: Value = serde_json::from_str(&get(server.monitor_port(), "/varz").await).unwrap();
    let referenced = referenced();

    // Act: scrape until every family has shown up (some only after a rebuild switches or the
    // gateway's first discovery round), at most 30 s
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let mut available = exposed(&get(http.port(), "/metrics").await);
        varz_names(&varz, "gnatsd_varz", &mut available);
        available.extend(EXPORTER_JETSTREAM.iter().map(|s| (*s).to_owned()));
        let missing: Vec<String> = referenced.difference(&available).cloned().collect();
        if missing.is_empty() || tokio::time::Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Assert
    assert!(referenced.len() > 25, "the dashboards and rules name {} metrics: {referenced:?}", referenced.len());
    assert!(missing.is_empty(), "named by a dashboard or rule but not exposed: {missing:?}");
    shutdown.trigger();
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[test]
fn names_are_found_in_promql_and_labels_are_not() {
    let names = metric_names(
        r#"histogram_quantile(0.99, sum by (le, route) (rate(factory_http_request_duration_seconds_bucket{code!~"x_y"}[5m]))) / max(gnatsd_varz_mem)"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["factory_http_request_duration_seconds_bucket", "gnatsd_varz_mem"]
    );
}
