//! One trace from the HTTP client to the async error: `factory up` (the real binary) exports
//! spans over OTLP/HTTP (JSON) to a receiver this test runs, set only by the standard `OTEL_*`
//! variables; the failure then shows in the status, the notification (NATS and SSE), the spans
//! of every hop, and the shipped logs — all under the trace id the client sent.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jetsource_testkit::NatsServer;
use serde_json::Value;
use warp::Filter;

use crate::eventually;
use crate::support::Process;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// An OTLP/HTTP receiver keeping every span it is sent (JSON encoding).
struct Receiver {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    async fn start() -> Self {
        let spans = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&spans);
        let route = warp::post().and(warp::path!("v1" / "traces")).and(warp::body::bytes()).map(move |body: Bytes| {
            let export: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let mut kept = keep.lock().unwrap();
            for resource in export["resourceSpans"].as_array().into_iter().flatten() {
                for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                    kept.extend(scope["spans"].as_array().into_iter().flatten().cloned());
                }
            }
            warp::reply()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(warp::serve(route).incoming(listener).run());
        Self { addr, spans }
    }

    /// The `service` attribute of every span of `trace_id` received so far.
    fn services_in(&self, trace_id: &str) -> BTreeSet<String> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .filter(|s| s["traceId"].as_str().is_some_and(|t| t.eq_ignore_ascii_case(trace_id)))
            .flat_map(|s| s["attributes"].as_array().cloned().unwrap_or_default())
            .filter(|a| a["key"] == "service")
            .filter_map(|a| a["value"]["stringValue"].as_str().map(str::to_owned))
            .collect()
    }
}

async fn call(
    http: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value, String) {
    let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut request = hyper::Request::builder().method(method).uri(format!("http://{http}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::copy_from_slice(body.as_bytes()))).unwrap();
    let exchange = async {
        let response = client.request(request).await.unwrap();
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null), text)
    };
    tokio::time::timeout(Duration::from_secs(20), exchange).await.unwrap_or_else(|_| panic!("{method} {path} hung"))
}

pub(crate) async fn post(http: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Value {
    let mut all = vec![("content-type", "application/json")];
    all.extend_from_slice(headers);
    let (status, json, text) = call(http, "POST", path, &all, body).await;
    assert!(status == 200 || status == 202, "{path}: {status} {text}");
    json
}

#[tokio::test]
async fn a_failing_order_is_one_trace_from_the_client_through_every_hop_to_the_logs() {
    // Arrange: nats-server, an OTLP receiver, and `factory up` exporting to it
    let server = NatsServer::start();
    let receiver = Receiver::start().await;
    let port = jetsource_testkit::server::free_port().unwrap();
    let factory = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
            .args(["up", "--nats-url", &server.url(), "--http", &format!("127.0.0.1:{port}"), "--log", "error"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{}", receiver.addr))
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("factory binary"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while jetsource_testkit::server::http_status(port, "/readyz") != Some(200) {
        assert!(std::time::Instant::now() < deadline, "factory up did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let http: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    post(http, "/v1/commands/product/widget/define", &[], r#"{"name": "W", "bom": [{"sku": "bolt", "qty": 4}]}"#).await;
    post(http, "/v1/commands/stock/bolt@main/receive", &[], r#"{"qty": 10}"#).await;
    post(http, "/v1/commands/order/o-9/plan", &[], r#"{"product_id": "widget", "qty": 5, "warehouse": "main"}"#).await;
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut notifications = client.subscribe("notify.start-o-9").await.unwrap();

    // Act: the client starts the order in its own trace, then follows it
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    let started = post(
        http,
        "/v1/commands/order/o-9/start",
        &[("traceparent", &traceparent), ("idempotency-key", "start-o-9")],
        "{}",
    )
    .await;
    let (sse_status, _, sse) = call(http, "GET", "/v1/commands/start-o-9/events", &[], "").await;
    let notification = tokio::time::timeout(Duration::from_secs(20), notifications.next()).await.unwrap().unwrap();
    let (_, status, _) = call(http, "GET", "/v1/commands/start-o-9", &[], "").await;

    // Assert: status, notification (NATS and SSE) agree, in the client's trace
    let notification: Value = serde_json::from_slice(&notification.payload).unwrap();
    assert_eq!(started["status"], "accepted");
    assert_eq!((status["status"].as_str(), status["trace_id"].as_str()), (Some("failed"), Some(TRACE_ID)), "{status}");
    assert_eq!(status["errors"][0]["reason"], "insufficient_stock");
    assert_eq!(status["errors"][0]["trace_id"], TRACE_ID);
    assert_eq!(
        (notification["reason"].as_str(), notification["trace_id"].as_str()),
        (Some("insufficient_stock"), Some(TRACE_ID))
    );
    assert_eq!(sse_status, 200);
    assert!(sse.contains("event:notification") && sse.contains("insufficient_stock"), "{sse}");
    assert!(sse.contains(r#""status":"failed""#), "{sse}");

    // Every hop exported its spans under the client's trace id
    let expected: BTreeSet<String> =
        ["gateway", "production", "projector", "saga", "stock", "notifier"].map(String::from).into();
    let seen = eventually("spans of every hop", || async {
        let seen = receiver.services_in(TRACE_ID);
        seen.is_superset(&expected).then_some(seen)
    })
    .await;
    assert!(seen.is_superset(&expected), "{seen:?}");

    // The logs of that trace are shipped and found by trace id
    let logs = eventually("the trace's logs", || async {
        let (code, page, _) = call(http, "GET", &format!("/v1/logs?trace_id={TRACE_ID}"), &[], "").await;
        let records = page["records"].as_array().cloned().unwrap_or_default();
        (code == 200 && records.iter().any(|r| r["service"] == "saga")).then_some(records)
    })
    .await;
    assert!(logs.iter().all(|r| r["trace_id"] == TRACE_ID));
    assert!(logs.iter().any(|r| r["message"] == "production order failed"), "{logs:?}");
    drop(factory);
}
