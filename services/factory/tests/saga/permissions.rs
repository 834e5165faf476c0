//! The accounts and per-service users of `nats/accounts.conf` (what Kubernetes runs): every
//! service runs under its own least-privilege user and the whole flow works — commands, views,
//! the saga, notifications, status, a rebuild, a compaction — while a service cannot write
//! another's events.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use factory::app::{App, AppConfig};
use futures::StreamExt;
use jetsource::topology::{ProvisionOptions, Topology, provision};
use jetsource_runtime::Shutdown;
use jetsource_testkit::NatsServer;
use serde_json::Value;

use crate::eventually;

const USERS: [&str; 11] = [
    "sys",
    "admin",
    "catalog",
    "stock",
    "production",
    "projector",
    "saga",
    "notifier",
    "logbook",
    "archiver",
    "gateway",
];

fn password(user: &str) -> String {
    format!("pw-{user}-{}", std::process::id())
}

fn url_for(server: &NatsServer, user: &str) -> String {
    server.url().replace("nats://", &format!("nats://{user}:{}@", password(user)))
}

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, Value) {
    use http_body_util::{BodyExt, Full};
    let client: hyper_util::client::legacy::Client<_, Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::copy_from_slice(body.as_bytes())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(20), client.request(request)).await.unwrap().unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// On failure, prints the server's permission violations (what a user was refused).
struct Violations(std::path::PathBuf);

impl Drop for Violations {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "log") {
                let log = std::fs::read_to_string(entry.path()).unwrap_or_default();
                for line in log.lines().filter(|l| l.contains("Violation")) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

#[tokio::test]
async fn every_service_works_under_its_own_least_privilege_user() {
    // Arrange: a server with the factory's accounts; the admin provisions the topology
    let accounts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../nats/accounts.conf").canonicalize().unwrap();
    let env: Vec<(String, String)> =
        USERS.iter().map(|u| (format!("{}_PASSWORD", u.to_uppercase()), password(u))).collect();
    let server = NatsServer::start_with(|config| {
        // Includes are relative to the configuration's directory.
        std::fs::copy(&accounts, config.work_dir.join("accounts.conf")).unwrap();
        config.extra = "include \"accounts.conf\"".into();
        config.env.clone_from(&env);
    });
    let _report = Violations(server.dir().to_path_buf());
    let admin = jetsource::connect(&url_for(&server, "admin"), "test-admin").await.unwrap();
    let js = async_nats::jetstream::new(admin.clone());
    provision(&js, &Topology::parse(factory::TOPOLOGY).unwrap(), ProvisionOptions::default()).await.unwrap();
    let shutdown = Shutdown::new();
    let mut gateway = None;
    for (service, user) in [
        ("catalog", "catalog"),
        ("stock", "stock"),
        ("production", "production"),
        ("projector", "projector"),
        ("saga", "saga"),
        ("notifier", "notifier"),
        ("logbook", "logbook"),
        ("archiver", "archiver"),
        ("gateway", "gateway"),
    ] {
        let mut config = AppConfig::new(url_for(&server, user), vec![service]);
        config.provision = false;
        if service == "gateway" {
            config.http = Some("127.0.0.1:0".parse().unwrap());
        }
        let app = App::build(config).await.unwrap_or_else(|e| panic!("{user}: {e:#}"));
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(app.serve(shutdown.clone(), move |addr| {
            let _ = tx.send(addr);
        }));
        if let Some(addr) = rx.await.unwrap() {
            gateway = Some(addr);
        }
    }
    let gateway = gateway.unwrap();
    let mut notifications = admin.subscribe("notify.>").await.unwrap();

    // Act: the whole flow through the edge
    for (path, body) in [
        ("/v1/commands/product/widget/define", r#"{"name": "W", "bom": [{"sku": "bolt", "qty": 2}]}"#),
        ("/v1/commands/stock/bolt@main/receive", r#"{"qty": 10}"#),
        ("/v1/commands/order/o-1/plan", r#"{"product_id": "widget", "qty": 2, "warehouse": "main"}"#),
        ("/v1/commands/order/o-2/plan", r#"{"product_id": "widget", "qty": 50, "warehouse": "main"}"#),
    ] {
        let (status, reply) = http(gateway, "POST", path, body).await;
        assert_eq!(status, 200, "{path}: {reply}");
    }
    let (_, covered) = http(gateway, "POST", "/v1/commands/order/o-1/start", "{}").await;
    let (_, short) = http(gateway, "POST", "/v1/commands/order/o-2/start", "{}").await;
    let (events, _) =
        http(gateway, "GET", &format!("/v1/commands/{}/events", short["command_id"].as_str().unwrap()), "").await;
    let failure = async {
        while let Some(message) = notifications.next().await {
            let notification: Value = serde_json::from_slice(&message.payload).unwrap();
            if notification["status"] == "failed" {
                return notification;
            }
        }
        Value::Null
    };
    let notification = tokio::time::timeout(Duration::from_secs(20), failure).await.unwrap();
    let completed = eventually("the covered order completed", || async {
        let (_, doc) =
            http(gateway, "GET", &format!("/v1/commands/{}", covered["command_id"].as_str().unwrap()), "").await;
        (doc["status"] == "completed").then_some(doc)
    })
    .await;
    let (history, _) = http(gateway, "GET", "/v1/aggregates/stock/bolt@main/events", "").await;
    let (rebuild, _) = http(gateway, "POST", "/v1/projections/stock/rebuild", "").await;
    let (logs, _) = http(gateway, "GET", "/v1/logs?level=warn", "").await;
    let status = eventually("every service answering", || async {
        let (_, status) = http(gateway, "GET", "/status", "").await;
        (status["status"] == "ok").then_some(status)
    })
    .await;

    // The archiver compacts under its own user: a stock item past its first snapshot
    for _ in 0..100 {
        let (status, reply) = http(gateway, "POST", "/v1/commands/stock/bolt@main/receive", r#"{"qty": 1}"#).await;
        assert_eq!(status, 200, "{reply}");
    }
    let archiver_user = jetsource::connect(&url_for(&server, "archiver"), "test-archiver").await.unwrap();
    let topology = Topology::parse(factory::TOPOLOGY).unwrap();
    let archiver = jetsource::archive::Archiver::open(archiver_user, &topology).await.unwrap();
    let compacted = eventually("bolt@main compacted", || async {
        archiver.run(&Default::default(), |_| {}).await.unwrap();
        let hot = js.get_stream("EVENTS").await.unwrap().info_with_subjects("evt.stock.bolt@main").await.unwrap();
        let count = hot.map(|r| r.unwrap().1).collect::<Vec<_>>().await;
        (count.first().is_some_and(|c| *c < 100)).then_some(count)
    })
    .await;
    let archived = archiver.status().await.unwrap();

    // A service cannot write another aggregate type's events
    let stock = jetsource::connect(&url_for(&server, "stock"), "test-stock").await.unwrap();
    let stock_js = async_nats::jetstream::new(stock);
    let acked = |subject: &'static str| {
        let stock_js = stock_js.clone();
        async move {
            match stock_js.publish(subject, "{}".into()).await {
                Ok(ack) => matches!(tokio::time::timeout(Duration::from_secs(2), ack).await, Ok(Ok(_))),
                Err(_) => false,
            }
        }
    };
    // the same user writing its own type is acknowledged, so a refusal below is the permission
    let own_write = acked("evt.stock.own-write@main").await;
    let forged_write = acked("evt.order.forged").await;

    // Assert
    assert_eq!(notification["reason"], "insufficient_stock");
    assert_eq!(completed["status"], "completed");
    assert_eq!((events, history, rebuild, logs), (200, 200, 200, 200));
    assert_eq!(status["missing"].as_array().map(Vec::len), Some(0), "{status}");
    assert!(compacted[0] < 100 && archived.types["stock"].archived.events > 100, "{archived:?}");
    assert!(own_write, "the stock user could not write a stock event");
    assert!(!forged_write, "the stock user's order event was acknowledged");
    let forged = js.get_stream("EVENTS").await.unwrap().get_last_raw_message_by_subject("evt.order.forged").await;
    assert!(
        matches!(&forged, Err(e) if e.kind() == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound),
        "the stock user wrote an order event: {forged:?}"
    );
    shutdown.trigger();
}
