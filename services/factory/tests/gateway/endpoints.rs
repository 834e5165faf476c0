use std::time::Duration;

use crate::support::Stack;
use jetsource_testkit::NatsServer;

async fn seeded() -> Stack {
    let stack = Stack::start().await;
    stack
        .command("/v1/commands/product/widget/define", r#"{"name": "Widget", "bom": [{"sku": "bolt", "qty": 4}]}"#)
        .await;
    stack.command("/v1/commands/stock/bolt@main/receive", r#"{"qty": 100}"#).await;
    stack
}

#[tokio::test]
async fn a_command_answers_200_with_its_version_as_etag() {
    let stack = seeded().await;

    let resp = stack.post("/v1/commands/stock/bolt@main/ship", r#"{"qty": 5}"#).await;

    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("etag"), Some("\"2\""));
    assert_eq!(resp.header("content-type"), Some("application/json"));
    let body = resp.json();
    assert_eq!((body["status"].as_str(), body["version"].as_u64()), (Some("succeeded"), Some(2)));
    assert!(resp.header("x-trace-id").is_some_and(|t| t.len() == 32));
}

#[tokio::test]
async fn an_asynchronous_command_answers_202_with_location() {
    let stack = seeded().await;
    stack.command("/v1/commands/order/o-1/plan", r#"{"product_id": "widget", "qty": 1, "warehouse": "main"}"#).await;

    let resp = stack.post("/v1/commands/order/o-1/start", "").await;

    assert_eq!(resp.status, 202);
    let id = resp.json()["command_id"].as_str().unwrap().to_owned();
    assert_eq!(resp.header("location"), Some(format!("/v1/commands/{id}").as_str()));
}

#[tokio::test]
async fn if_match_and_idempotency_key_work_over_http() {
    let stack = seeded().await;

    let pinned = stack
        .call(
            "POST",
            "/v1/commands/stock/bolt@main/ship",
            &[("content-type", "application/json"), ("if-match", "\"1\"")],
            br#"{"qty": 1}"#,
        )
        .await;
    let keyed = [("content-type", "application/json"), ("idempotency-key", "ship-42")];
    let first = stack.call("POST", "/v1/commands/stock/bolt@main/ship", &keyed, br#"{"qty": 2}"#).await;
    let again = stack.call("POST", "/v1/commands/stock/bolt@main/ship", &keyed, br#"{"qty": 2}"#).await;

    assert_eq!(pinned.status, 200);
    assert_eq!((first.status, again.status), (200, 200));
    assert_eq!(first.json(), again.json());
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn command_status_and_its_event_stream() {
    let stack = seeded().await;
    let reply = stack.command("/v1/commands/stock/bolt@main/receive", r#"{"qty": 1}"#).await;
    let id = reply["command_id"].as_str().unwrap();

    // The status is a view, a moment behind the event: the command's stream_seq waits for it.
    let token = reply["stream_seq"].to_string();
    let status = stack.call("GET", &format!("/v1/commands/{id}"), &[("consistency-token", &token)], b"").await;
    let events = stack.get(&format!("/v1/commands/{id}/events")).await;

    assert_eq!(status.status, 200, "{status:?}");
    assert_eq!(status.json()["status"], "succeeded");
    assert_eq!(events.status, 200);
    assert_eq!(events.header("content-type"), Some("text/event-stream"));
    let text = String::from_utf8_lossy(&events.body);
    assert!(text.contains("event:status") && text.contains(r#""status":"succeeded""#), "{text}");
}

#[tokio::test]
async fn views_answer_with_read_your_writes() {
    let stack = seeded().await;
    let reply = stack.command("/v1/commands/stock/bolt@main/reserve", r#"{"qty": 8, "order_id": "o-9"}"#).await;
    let token = reply["stream_seq"].to_string();

    let doc = stack.call("GET", "/v1/views/stock/bolt@main", &[("consistency-token", &token)], b"").await;
    let warehouse = stack.call("GET", "/v1/views/warehouse/main", &[("consistency-token", &token)], b"").await;
    let page = stack.call("GET", "/v1/views/stock?prefix=bolt&limit=10", &[("consistency-token", &token)], b"").await;
    let products = stack.call("GET", "/v1/views/products/widget", &[("consistency-token", &token)], b"").await;

    assert_eq!(doc.status, 200);
    assert_eq!((doc.json()["reserved"].as_u64(), doc.json()["available"].as_u64()), (Some(8), Some(92)));
    assert_eq!(doc.header("consistency-token"), Some(token.as_str()));
    assert_eq!(warehouse.json()["skus"]["bolt"]["available"], 92);
    assert_eq!(page.json()["items"][0]["sku"], "bolt");
    assert_eq!(products.json()["name"], "Widget");
}

#[tokio::test]
async fn aggregates_travel_in_time_and_list_their_history() {
    let stack = seeded().await;
    for _ in 0..3 {
        stack.command("/v1/commands/stock/bolt@main/ship", r#"{"qty": 10}"#).await;
    }
    let first_event = stack.get("/v1/aggregates/stock/bolt@main/events?limit=1").await.json();
    let at = first_event["events"][0]["recordedtime"].as_str().unwrap().to_owned();

    let now = stack.get("/v1/aggregates/stock/bolt@main").await;
    let v2 = stack.get("/v1/aggregates/stock/bolt@main?version=2").await;
    let then = stack.get(&format!("/v1/aggregates/stock/bolt@main?at={}", at.replace(':', "%3A"))).await;
    let page1 = stack.get("/v1/aggregates/stock/bolt@main/events?limit=2").await.json();
    let page2 =
        stack.get(&format!("/v1/aggregates/stock/bolt@main/events?limit=2&from={}", page1["next"])).await.json();

    assert_eq!((now.json()["version"].as_u64(), now.json()["state"]["on_hand"].as_u64()), (Some(4), Some(70)));
    assert_eq!(now.header("etag"), Some("\"4\""));
    assert_eq!(v2.json()["state"]["on_hand"], 90);
    assert_eq!(then.json()["state"]["on_hand"], 100, "{}", String::from_utf8_lossy(&then.body));
    assert_eq!(page1["events"].as_array().unwrap().len(), 2);
    assert_eq!(page1["events"][0]["specversion"], "1.0");
    assert_eq!(page1["events"][0]["type"], "factory.stock.StockReceived");
    assert_eq!(page2["events"].as_array().unwrap().len(), 2);
    assert!(page2["next"].is_null());
}

#[tokio::test]
async fn operations_status_health_metrics_openapi_and_projections() {
    let stack = seeded().await;

    let status = stack.get("/status").await;
    let healthz = stack.get("/healthz").await;
    let readyz = stack.get("/readyz").await;
    let metrics = stack.get("/metrics").await;
    let openapi = stack.get("/openapi.json").await;
    let projections = stack.get("/v1/projections").await;
    let rebuild = stack.post("/v1/projections/products/rebuild", "").await;
    let retry = stack.post("/v1/projections/stock/retry", "{}").await;

    assert_eq!(status.status, 200);
    assert_eq!(status.json()["status"], "ok", "{}", status.json());
    assert_eq!(status.json()["services"]["stock"][0]["version"], "0.1.0");
    assert_eq!((healthz.status, readyz.status), (200, 200));
    let text = String::from_utf8_lossy(&metrics.body);
    // The body is OpenMetrics (it ends in `# EOF`), and the content type says so.
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    assert_eq!(metrics.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(text.contains("factory_http_requests_total") && text.contains("factory_commands_total"), "{text}");
    assert_eq!(openapi.json()["openapi"], "3.1.0");
    assert_eq!(projections.json()["views"].as_array().unwrap().len(), 5);
    assert_eq!((rebuild.status, rebuild.json()["version"].as_u64()), (200, Some(2)));
    assert_eq!(retry.json()["still_parked"], 0);
    tokio::time::sleep(Duration::from_millis(10)).await;
}

#[tokio::test]
async fn factory_status_prints_the_same_report_and_fails_when_a_service_is_missing() {
    let stack = seeded().await;
    let run = |url: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
                .args(["status", "--nats-url", &url])
                .output()
                .unwrap()
        })
    };
    let all = run(stack.server.url()).await.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    assert!(all.status.success(), "{}", String::from_utf8_lossy(&all.stderr));
    assert_eq!(report["status"], "ok");
    assert_eq!(report["views"].as_array().unwrap().len(), 5);

    // A bare server with nothing running: degraded, every service missing, exit status 1.
    let bare = NatsServer::start();
    let none = run(bare.url()).await.unwrap();
    let report: serde_json::Value = serde_json::from_slice(&none.stdout).unwrap();
    assert!(!none.status.success());
    assert_eq!(report["status"], "degraded");
    assert_eq!(report["missing"].as_array().unwrap().len(), 8, "{report}");
    assert!(String::from_utf8_lossy(&none.stderr).contains("the factory is degraded"));
}

/// The events of a Server-Sent Events body: (event, id, data).
fn sse(body: &[u8]) -> Vec<(String, String, String)> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|block| {
            let field = |name: &str| {
                block.lines().find_map(|l| l.strip_prefix(&format!("{name}:")).map(|v| v.trim().to_owned()))
            };
            Some((field("event")?, field("id").unwrap_or_default(), field("data").unwrap_or_default()))
        })
        .collect()
}

#[tokio::test]
async fn a_command_stream_has_ids_resumes_after_last_event_id_and_ends_so_eventsource_stops() {
    // Arrange: an order whose start fails asynchronously (a status change and a notification)
    let stack = seeded().await;
    stack.command("/v1/commands/order/o-8/plan", r#"{"product_id": "widget", "qty": 500, "warehouse": "main"}"#).await;
    let started = stack.command("/v1/commands/order/o-8/start", "{}").await;
    let path = format!("/v1/commands/{}/events", started["command_id"].as_str().unwrap());

    // Act: the whole stream, then reconnects as EventSource does
    let whole = stack.get(&path).await;
    let events = sse(&whole.body);
    let (_, first_id, _) = events.first().cloned().unwrap();
    let after_first = stack.call("GET", &path, &[("last-event-id", &first_id)], b"").await;
    let (_, last_id, _) = events.last().cloned().unwrap();
    let after_end = stack.call("GET", &path, &[("last-event-id", &last_id)], b"").await;

    // Assert: every event has an id; the stream ends with `end`; a resume repeats nothing;
    // reconnecting after the end is 204
    assert!(events.iter().all(|(_, id, _)| id.split_once('.').is_some()), "{events:?}");
    let kinds: Vec<&str> = events.iter().map(|(e, _, _)| e.as_str()).collect();
    assert!(kinds.contains(&"status") && kinds.contains(&"notification"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"end"), "{kinds:?}");
    assert!(events.last().unwrap().2.contains(r#""status":"failed""#), "{events:?}");
    // (A resume sends the status as it is now, then the notifications after the position.)
    let content = |events: &[(String, String, String)]| {
        let mut content: Vec<(String, String)> = events.iter().map(|(e, _, d)| (e.clone(), d.clone())).collect();
        content.sort();
        content
    };
    let resumed = sse(&after_first.body);
    assert_eq!(content(&resumed), content(&events[1..]), "the resumed stream is the rest of the first, once");
    assert_eq!(after_end.status, 204, "{after_end:?}");
}

#[tokio::test]
async fn an_event_stream_takes_its_token_in_the_query_and_cors_lets_a_named_origin_in() {
    let secret = crate::auth::SECRET;
    let stack = Stack::start_with(|c| {
        c.gateway.auth = jetsource_http::AuthConfig {
            jwt: Some(jetsource_http::config::JwtConfig {
                key: jetsource_http::config::JwtKey::Hs256(jetsource_http::config::Secret::new(secret)),
                issuer: None,
                audience: None,
                role_claim: None,
            }),
            api_keys: Vec::new(),
        };
        c.gateway.cors_origins = vec!["https://console.example".into()];
    })
    .await;
    let token = crate::auth::hs256(serde_json::json!({"sub": "ops", "role": "operator", "exp": 4_102_444_800_u64}));
    let bearer = format!("Bearer {token}");
    let reply = stack
        .call(
            "POST",
            "/v1/commands/stock/bolt@main/receive",
            &[("authorization", &bearer), ("content-type", "application/json")],
            br#"{"qty": 1}"#,
        )
        .await;
    let path = format!("/v1/commands/{}/events", reply.json()["command_id"].as_str().unwrap());

    let without = stack.get(&path).await;
    let with_query = stack.get(&format!("{path}?access_token={token}")).await;
    let preflight = stack
        .call(
            "OPTIONS",
            "/v1/commands/stock/bolt@main/receive",
            &[
                ("origin", "https://console.example"),
                ("access-control-request-method", "POST"),
                ("access-control-request-headers", "authorization, content-type"),
            ],
            b"",
        )
        .await;
    let stranger = stack
        .call(
            "OPTIONS",
            "/v1/commands/stock/bolt@main/receive",
            &[("origin", "https://evil.example"), ("access-control-request-method", "POST")],
            b"",
        )
        .await;
    let simple =
        stack.call("GET", "/status", &[("origin", "https://console.example"), ("authorization", &bearer)], b"").await;

    assert_eq!(without.status, 401);
    assert_eq!(with_query.status, 200, "{with_query:?}");
    assert!(String::from_utf8_lossy(&with_query.body).contains("event:status"));
    assert_eq!(preflight.status, 200, "{preflight:?}");
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://console.example"));
    assert!(preflight.header("access-control-allow-headers").is_some_and(|h| h.contains("authorization")));
    assert_eq!(stranger.status, 403, "{stranger:?}");
    assert_eq!(simple.header("access-control-allow-origin"), Some("https://console.example"));
    assert!(simple.header("access-control-expose-headers").is_some_and(|h| h.contains("x-trace-id")));

    // A cookie session: made with the bearer header, then carried by the browser alone — to the
    // event stream, never to a command.
    let session = stack.call("POST", "/v1/session", &[("authorization", &bearer)], b"").await;
    let set_cookie = session.header("set-cookie").unwrap_or_default().to_owned();
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_owned();
    let by_cookie = stack.call("GET", &path, &[("cookie", &cookie)], b"").await;
    let command_by_cookie = stack
        .call(
            "POST",
            "/v1/commands/stock/bolt@main/receive",
            &[("cookie", &cookie), ("content-type", "application/json")],
            br#"{"qty": 1}"#,
        )
        .await;
    let no_session = stack.call("POST", "/v1/session", &[], b"").await;
    let closed = stack.call("DELETE", "/v1/session", &[], b"").await;
    assert_eq!(session.status, 204, "{session:?}");
    assert!(set_cookie.starts_with("jetsource_session=b."), "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/v1", "Max-Age=43200"] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    assert_eq!(by_cookie.status, 200, "{by_cookie:?}");
    assert!(String::from_utf8_lossy(&by_cookie.body).contains("event:status"));
    assert_eq!(command_by_cookie.status, 401, "a command is never authenticated by the cookie");
    assert_eq!(no_session.status, 401);
    assert_eq!(closed.status, 204);
    assert!(
        closed.header("set-cookie").is_some_and(|c| c.starts_with("jetsource_session=;") && c.contains("Max-Age=0"))
    );
}

#[tokio::test]
async fn a_transfer_over_http_moves_stock_between_warehouses_in_one_command() {
    // Arrange: 100 bolts in main
    let stack = seeded().await;

    // Act
    let moved = stack.command("/v1/commands/stock/bolt@main/transfer", r#"{"qty": 30, "to": "east"}"#).await;
    let refused = stack.post("/v1/commands/stock/bolt@main/transfer", r#"{"qty": 71, "to": "east"}"#).await;
    let same = stack.post("/v1/commands/stock/bolt@main/transfer", r#"{"qty": 1, "to": "main"}"#).await;

    // Assert: both sides moved, read back through the aggregate API; the refusals name why
    assert_eq!(moved["events"][0]["type"], "StockTransferredOut", "{moved}");
    let token = moved["stream_seq"].to_string();
    let consistent = [("consistency-token", token.as_str())];
    let main = stack.call("GET", "/v1/aggregates/stock/bolt@main", &consistent, b"").await.json();
    let east = stack.call("GET", "/v1/aggregates/stock/bolt@east", &consistent, b"").await.json();
    assert_eq!((main["state"]["on_hand"].as_u64(), east["state"]["on_hand"].as_u64()), (Some(70), Some(30)));
    assert_eq!((refused.status, refused.json()["reason"].as_str()), (422, Some("insufficient_stock")));
    assert_eq!((same.status, same.json()["reason"].as_str()), (422, Some("same_warehouse")));
    let stock_view = stack.call("GET", "/v1/views/stock/bolt@east", &consistent, b"").await;
    assert_eq!(stock_view.json()["on_hand"], 30, "{:?}", String::from_utf8_lossy(&stock_view.body));
}

#[tokio::test]
async fn a_views_parked_events_are_listed_with_their_reason() {
    // Arrange: a stock event another client wrote badly
    let stack = seeded().await;
    let js = async_nats::jetstream::new(stack.client.clone());
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("ce-type", "factory.stock.StockReceived");
    headers.insert("ce-schemaversion", "2");
    headers.insert("ce-commandid", "foreign-7");
    js.publish_with_headers("evt.stock.odd@main", headers, r#"{"qty": "lots"}"#.into()).await.unwrap().await.unwrap();

    // Act: once the view has parked it
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let listed = loop {
        let resp = stack.get("/v1/projections/stock/parked").await;
        assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
        let body = resp.json();
        if body["parked"].as_array().is_some_and(|p| !p.is_empty()) {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "nothing was parked: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let unknown = stack.get("/v1/projections/nope/parked").await;

    // Assert
    let record = &listed["parked"][0];
    assert_eq!(
        (record["subject"].as_str(), record["command_id"].as_str()),
        (Some("evt.stock.odd@main"), Some("foreign-7"))
    );
    assert!(record["reason"].as_str().unwrap().contains("invalid type"), "{record}");
    assert_eq!(listed["view"], "stock");
    assert_eq!((unknown.status, unknown.code()), (404, "not_found".to_owned()));
}

#[tokio::test]
async fn the_ids_of_an_aggregate_type_are_listed_by_prefix() {
    let stack = seeded().await;
    for id in ["nut@main", "nut@east", "washer@main"] {
        stack.command(&format!("/v1/commands/stock/{id}/receive"), r#"{"qty": 1}"#).await;
    }

    let all = stack.get("/v1/aggregates/stock").await.json();
    let nuts = stack.get("/v1/aggregates/stock?prefix=nut&limit=1").await.json();
    let bad = stack.get("/v1/aggregates/stock?limit=0").await;
    let unknown = stack.get("/v1/aggregates/nope").await;

    assert_eq!(all["ids"], serde_json::json!(["bolt@main", "nut@east", "nut@main", "washer@main"]), "{all}");
    assert_eq!(
        (nuts["ids"].clone(), nuts["truncated"].clone()),
        (serde_json::json!(["nut@east"]), serde_json::json!(true))
    );
    assert_eq!((bad.status, unknown.status), (400, 404));
}

/// The first `count` SSE events of `path` (with `headers`), read from a raw connection.
fn sse_events(addr: std::net::SocketAddr, path: &str, headers: &[(&str, &str)], count: usize) -> Vec<(String, String)> {
    use std::io::{BufRead, BufReader, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(15))).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    stream.write_all(format!("{request}\r\n").as_bytes()).unwrap();
    let mut events = Vec::new();
    let (mut id, mut data) = (String::new(), String::new());
    for line in BufReader::new(stream).lines() {
        let line = line.expect("the stream goes on until the events came");
        if let Some(value) = line.strip_prefix("id:") {
            id = value.trim().to_owned();
        } else if let Some(value) = line.strip_prefix("data:") {
            data = value.trim().to_owned();
        } else if line.is_empty() && !data.is_empty() {
            events.push((std::mem::take(&mut id), std::mem::take(&mut data)));
            if events.len() == count {
                break;
            }
        }
    }
    events
}

#[tokio::test]
async fn the_tail_streams_every_event_and_resumes_after_last_event_id() {
    // Arrange: two events stored (the seed), then the tail from the start
    let stack = seeded().await;
    let addr = stack.http;

    // Act
    let from_start = tokio::task::spawn_blocking(move || sse_events(addr, "/v1/tail", &[("Last-Event-ID", "0")], 2));
    let from_start = from_start.await.unwrap();
    let first_id = from_start[0].0.clone();
    let after_first =
        tokio::task::spawn_blocking(move || sse_events(addr, "/v1/tail", &[("Last-Event-ID", first_id.as_str())], 1));
    let after_first = after_first.await.unwrap();
    // a tail from now on: commands keep coming until it has shown one (it starts when its
    // consumer exists, which the client cannot see)
    let mut live = tokio::task::spawn_blocking(move || sse_events(addr, "/v1/tail", &[], 1));
    let live = loop {
        stack.command("/v1/commands/stock/live@main/receive", r#"{"qty": 1}"#).await;
        if let Ok(events) = tokio::time::timeout(std::time::Duration::from_millis(100), &mut live).await {
            break events.unwrap();
        }
    };
    // one type's tail: an order event passes it by, the stock event after it is shown
    let mut stock_only = tokio::task::spawn_blocking(move || sse_events(addr, "/v1/tail?type=stock", &[], 1));
    let mut round = 0;
    let stock_only = loop {
        round += 1;
        let product = format!(r#"{{"name": "Typed {round}", "bom": [{{"sku": "bolt", "qty": 1}}]}}"#);
        stack.command(&format!("/v1/commands/product/typed-{round}/define"), &product).await;
        stack.command("/v1/commands/stock/typed@main/receive", r#"{"qty": 1}"#).await;
        if let Ok(events) = tokio::time::timeout(std::time::Duration::from_millis(100), &mut stock_only).await {
            break events.unwrap();
        }
    };
    let unknown_type = stack.call("GET", "/v1/tail?type=gizmo", &[], b"").await;
    let bad = stack.call("GET", "/v1/tail", &[("last-event-id", "x")], b"").await;
    let beyond = stack.call("GET", "/v1/tail", &[("last-event-id", "18446744073709551615")], b"").await;

    // Assert: ids are stream sequences, data names the event and its command
    // (the product's tag copies sit before its event in the stream, under tag.>, not evt.>)
    let ids: Vec<u64> = from_start.iter().map(|(id, _)| id.parse().unwrap()).collect();
    assert!(ids[0] < ids[1], "{ids:?}");
    let first: serde_json::Value = serde_json::from_str(&from_start[0].1).unwrap();
    assert_eq!(
        (first["subject"].as_str(), first["type"].as_str()),
        (Some("evt.product.widget"), Some("factory.product.ProductDefined"))
    );
    assert!(first["commandid"].as_str().is_some_and(|c| !c.is_empty()), "{first}");
    assert_eq!(after_first[0].0, ids[1].to_string(), "resumed after the first");
    let seen: serde_json::Value = serde_json::from_str(&live[0].1).unwrap();
    assert_eq!(seen["subject"], "evt.stock.live@main");
    let typed: serde_json::Value = serde_json::from_str(&stock_only[0].1).unwrap();
    assert!(typed["subject"].as_str().is_some_and(|s| s.starts_with("evt.stock.")), "{typed}");
    assert_eq!((unknown_type.status, unknown_type.code()), (404, "not_found".to_owned()));
    assert_eq!((bad.status, bad.code()), (400, "invalid".to_owned()));
    assert_eq!(beyond.status, 400, "no sequence follows the last one");
}

#[tokio::test]
async fn an_aggregate_stream_sends_its_history_then_each_new_event() {
    // Arrange: one receipt before the stream opens
    let stack = seeded().await;
    let addr = stack.http;

    // Act: its history (1 event), then new events, until three have come
    let mut streamed =
        tokio::task::spawn_blocking(move || sse_events(addr, "/v1/aggregates/stock/bolt@main/stream", &[], 3));
    let events = loop {
        stack.command("/v1/commands/stock/bolt@main/receive", r#"{"qty": 2}"#).await;
        if let Ok(events) = tokio::time::timeout(std::time::Duration::from_millis(100), &mut streamed).await {
            break events.unwrap();
        }
    };
    let resumed = {
        let last = events[0].0.clone();
        tokio::task::spawn_blocking(move || {
            sse_events(addr, "/v1/aggregates/stock/bolt@main/stream", &[("Last-Event-ID", last.as_str())], 1)
        })
        .await
        .unwrap()
    };
    let unknown = stack.call("GET", "/v1/aggregates/nope/x/stream", &[], b"").await;

    // Assert: CloudEvents in order with dense versions; a resume goes on after the id
    let parsed: Vec<serde_json::Value> = events.iter().map(|(_, data)| serde_json::from_str(data).unwrap()).collect();
    let versions: Vec<u64> = parsed.iter().map(|e| e["aggregateversion"].as_u64().unwrap()).collect();
    assert_eq!(&versions[..3], [1, 2, 3]);
    assert_eq!(parsed[0]["type"], "factory.stock.StockReceived");
    assert_eq!(parsed[0]["data"]["qty"], 100);
    let second: serde_json::Value = serde_json::from_str(&resumed[0].1).unwrap();
    assert_eq!(second["aggregateversion"], 2);
    assert_eq!(unknown.status, 404);
}
