//! `GET /status`: is the bus up, is JetStream answering, which services answer (NATS micro
//! discovery, with instances and versions), how far behind each view and the archive are
//! (hot and archived sizes beside). Overall `ok`, `degraded` (something is missing or behind)
//! or `down` (no bus).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};

use jetsource_runtime::App;
use jetsource_runtime::wire::subject;

use crate::Gateway;

/// A view this far behind makes the application `degraded`.
const LAG_DEGRADED: u64 = 10_000;

/// The status report and its HTTP status (503 when down).
pub(crate) async fn report(gw: &Gateway) -> (u16, Value) {
    status(&gw.app, &gw.client).await
}

/// The status report of `app` over any connection (what the CLI's `status` prints), and its
/// HTTP status. The services expected are the registry's discoverable ones.
pub async fn status(app: &App, client: &async_nats::Client) -> (u16, Value) {
    let connected = client.connection_state() == async_nats::connection::State::Connected;
    let info = client.server_info();
    let js = async_nats::jetstream::new(client.clone());
    let jetstream =
        connected && matches!(tokio::time::timeout(Duration::from_secs(2), js.query_account()).await, Ok(Ok(_)));
    let services = if connected { discover(client).await } else { BTreeMap::new() };
    let missing: Vec<&str> = app.discoverable_services().into_iter().filter(|s| !services.contains_key(*s)).collect();
    let views = if connected && services.contains_key("projector") {
        match tokio::time::timeout(Duration::from_secs(2), client.request(subject::PROJECTOR_STATUS, "".into())).await {
            Ok(Ok(reply)) => serde_json::from_slice::<Value>(&reply.payload).ok().map(|v| v["views"].clone()),
            _ => None,
        }
    } else {
        None
    };
    let store = jetsource::StoreConfig::default();
    let archive = match (&store.archive, connected && jetstream) {
        (Some(archive), true) => jetsource::archive::sizes(&js, &store.stream, archive).await.ok(),
        _ => None,
    };
    let archive_behind = archive.is_some_and(|a| a.lag > LAG_DEGRADED || !a.sourcing);
    let behind = archive_behind
        || views.as_ref().and_then(Value::as_array).is_some_and(|views| {
            views.iter().any(|v| v["lag"].as_u64().unwrap_or(0) > LAG_DEGRADED || v["parked"].as_u64().unwrap_or(0) > 0)
        });
    let overall = if !connected || !jetstream {
        "down"
    } else if !missing.is_empty() || views.is_none() || behind {
        "degraded"
    } else {
        "ok"
    };
    let body = json!({
        "status": overall,
        "nats": {
            "connected": connected,
            "server": info.server_name,
            "version": info.version,
            "jetstream": if jetstream { "answering" } else { "not answering" },
        },
        "services": services,
        "missing": missing,
        "views": views,
        "archive": archive,
    });
    (if overall == "down" { 503 } else { 200 }, body)
}

/// Keeps `<app>_service_instances{service}` (instances answering discovery) current, every
/// 15 s, for dashboards and the "service missing" alert.
pub(crate) async fn watch_services(
    app: std::sync::Arc<App>,
    client: async_nats::Client,
    metrics: std::sync::Arc<jetsource_telemetry::Metrics>,
    shutdown: jetsource_runtime::Shutdown,
) {
    loop {
        let services = discover(&client).await;
        for name in app.discoverable_services() {
            let count = services.get(name).map_or(0, Vec::len);
            metrics.service_instances.get_or_create(&[("service", name.into())]).set(count as i64);
        }
        tokio::select! {
            () = shutdown.wait() => return,
            () = tokio::time::sleep(Duration::from_secs(15)) => {}
        }
    }
}

/// Every instance answering `$SRV.PING` within a moment, by service name.
async fn discover(client: &async_nats::Client) -> BTreeMap<String, Vec<Value>> {
    let mut services: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let inbox = client.new_inbox();
    let Ok(mut replies) = client.subscribe(inbox.clone()).await else { return services };
    if client.publish_with_reply(subject::SRV_PING, inbox, "".into()).await.is_err() {
        return services;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(Some(reply)) = tokio::time::timeout_at(deadline, replies.next()).await {
        if let Ok(ping) = serde_json::from_slice::<Value>(&reply.payload) {
            let name = ping["name"].as_str().unwrap_or_default().to_owned();
            services.entry(name).or_default().push(json!({
                "id": ping["id"],
                "version": ping["version"],
                "instance": ping["metadata"]["instance"],
            }));
        }
    }
    services
}
