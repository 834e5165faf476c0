use std::time::Duration;

use crate::support::Stack;

/// method, path, headers, body, status, code, a part of the detail
type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a [u8], u16, &'a str, &'a str);

#[tokio::test]
async fn every_error_path_answers_its_problem_document() {
    let stack = Stack::start().await;
    stack.command("/v1/commands/stock/bolt@main/receive", r#"{"qty": 5}"#).await;
    let json = [("content-type", "application/json")];
    let big = vec![b' '; 300 * 1024];
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/v1/commands/stock/bolt@main/receive",
            json.to_vec(),
            br#"{"qty": 1"#,
            400,
            "invalid",
            "malformed JSON",
        ),
        (
            "POST",
            "/v1/commands/stock/bolt@main/receive",
            json.to_vec(),
            br#"{"qty": "one"}"#,
            400,
            "invalid",
            "qty: invalid type",
        ),
        (
            "POST",
            "/v1/commands/stock/bolt@main/receive",
            json.to_vec(),
            br#"{"qty": 1, "x": 2}"#,
            400,
            "invalid",
            "unknown field `x`",
        ),
        (
            "POST",
            "/v1/commands/stock/bolt/receive",
            json.to_vec(),
            br#"{"qty": 1}"#,
            400,
            "invalid",
            "<sku>@<warehouse>",
        ),
        (
            "POST",
            "/v1/commands/stock/bolt@main/receive",
            vec![("content-type", "application/json"), ("if-match", "soon")],
            br#"{"qty": 1}"#,
            400,
            "invalid",
            "If-Match",
        ),
        (
            "POST",
            "/v1/commands/stock/bolt@main/receive",
            vec![("content-type", "application/json"), ("idempotency-key", "a b")],
            br#"{"qty": 1}"#,
            400,
            "invalid",
            "Idempotency-Key",
        ),
        (
            "GET",
            "/v1/views/stock/bolt@main",
            vec![("consistency-token", "x")],
            b"",
            400,
            "invalid",
            "Consistency-Token",
        ),
        ("GET", "/v1/views/stock?color=red", vec![], b"", 400, "invalid", "unknown query parameter"),
        ("GET", "/v1/aggregates/stock/bolt@main?version=two", vec![], b"", 400, "invalid", "version"),
        ("GET", "/v1/aggregates/stock/bolt@main?at=yesterday", vec![], b"", 400, "invalid", "RFC 3339"),
        ("GET", "/v1/aggregates/stock/bolt@main/events?limit=0", vec![], b"", 400, "invalid", "limit"),
        ("POST", "/v1/commands/gizmo/g1/make", json.to_vec(), b"{}", 404, "not_found", "unknown aggregate type"),
        ("POST", "/v1/commands/stock/bolt@main/teleport", json.to_vec(), b"{}", 404, "not_found", "has no command"),
        ("GET", "/v1/views/nope/x", vec![], b"", 404, "not_found", "unknown view"),
        ("GET", "/v1/views/stock/nut@main", vec![], b"", 404, "not_found", "no stock document"),
        ("GET", "/v1/aggregates/stock/nut@main", vec![], b"", 404, "not_found", "no stock"),
        ("GET", "/v1/commands/unknown-command", vec![], b"", 404, "not_found", "no commands document"),
        ("GET", "/nowhere", vec![], b"", 404, "not_found", "no such resource"),
        ("DELETE", "/v1/views/stock/bolt@main", vec![], b"", 405, "method_not_allowed", "not allowed"),
        (
            "POST",
            "/v1/commands/stock/bolt@main/receive",
            vec![("content-type", "application/json"), ("if-match", "\"9\"")],
            br#"{"qty": 1}"#,
            412,
            "precondition_failed",
            "expected version 9",
        ),
        (
            "POST",
            "/v1/commands/stock/bolt@main/receive",
            vec![("content-type", "application/json"), ("if-match", "W/\"1\"")],
            br#"{"qty": 1}"#,
            412,
            "precondition_failed",
            "weak entity tag",
        ),
        (
            "POST",
            "/v1/commands/stock/nut@main/receive",
            vec![("content-type", "application/json"), ("if-match", "*")],
            br#"{"qty": 1}"#,
            412,
            "precondition_failed",
            "no stock nut@main exists",
        ),
        ("POST", "/v1/commands/stock/bolt@main/receive", json.to_vec(), &big, 413, "invalid", "larger than"),
        (
            "POST",
            "/v1/commands/stock/bolt@main/receive",
            vec![("content-type", "text/plain")],
            b"qty=1",
            415,
            "invalid",
            "must be JSON",
        ),
        (
            "POST",
            "/v1/commands/stock/bolt@main/ship",
            json.to_vec(),
            br#"{"qty": 50}"#,
            422,
            "rejected",
            "insufficient stock",
        ),
    ];
    for (method, path, headers, body, status, code, needle) in cases {
        let resp = stack.call(method, path, &headers, body).await;
        let problem = resp.json();
        assert_eq!((resp.status, resp.code().as_str()), (status, code), "{method} {path}: {problem}");
        assert_eq!(resp.header("content-type"), Some("application/problem+json"), "{method} {path}");
        assert!(problem["detail"].as_str().unwrap_or_default().contains(needle), "{method} {path}: {problem}");
        assert_eq!(problem["status"], status);
        assert_eq!(problem["type"], "about:blank");
        if status != 404 && status != 405 {
            assert!(problem["trace_id"].as_str().is_some_and(|t| t.len() == 32), "{method} {path}: {problem}");
        }
    }
    let reused = [("content-type", "application/json"), ("idempotency-key", "k-1")];
    stack.call("POST", "/v1/commands/stock/bolt@main/receive", &reused, br#"{"qty": 1}"#).await;
    let again = stack.call("POST", "/v1/commands/stock/bolt@main/receive", &reused, br#"{"qty": 2}"#).await;
    assert_eq!((again.status, again.code().as_str()), (422, "idempotency_key_reused"));
    // The key as a structured-field string is the same key; `*` matches an existing aggregate.
    let quoted = [("content-type", "application/json"), ("idempotency-key", "\"k-1\""), ("if-match", "*")];
    let replayed = stack.call("POST", "/v1/commands/stock/bolt@main/receive", &quoted, br#"{"qty": 1}"#).await;
    assert_eq!(replayed.status, 200, "{}", replayed.json());
    assert_eq!(replayed.header("idempotent-replayed"), Some("true"));
}

#[tokio::test]
async fn a_conflict_that_outlasts_the_retries_answers_409() {
    let stack = Stack::start_with(|c| c.commands.repository.max_attempts = 1).await;
    stack.command("/v1/commands/stock/bolt@main/receive", r#"{"qty": 5}"#).await;
    let other = jetsource::Repository::<factory_domain::stock::Stock>::new(
        jetsource::EventStore::new(stack.client.clone(), Default::default()),
        None,
        Default::default(),
    );
    let receive = factory_domain::stock::StockCommand::parse("receive", br#"{"qty": 1}"#).unwrap();
    other
        .execute(&jetsource::AggregateId::new("bolt@main").unwrap(), receive, &jetsource::CommandContext::new())
        .await
        .unwrap();

    let resp = stack.post("/v1/commands/stock/bolt@main/receive", r#"{"qty": 1}"#).await;

    assert_eq!((resp.status, resp.code().as_str()), (409, "conflict"));
}

#[tokio::test]
async fn a_method_a_path_does_not_take_is_405_naming_the_ones_it_does() {
    let stack = Stack::start().await;

    let resp = stack.call("DELETE", "/v1/views/stock/bolt@main", &[], b"").await;

    assert_eq!((resp.status, resp.code().as_str()), (405, "method_not_allowed"));
    assert_eq!(resp.header("allow"), Some("GET"));
}

#[tokio::test]
async fn past_the_in_flight_bound_requests_get_503_with_retry_after() {
    // Global overload is the server's state, not the caller's fault: 503 (it was 429 until
    // per-caller rate limits took that status).
    let stack = Stack::start_with(|c| c.gateway.max_in_flight = 0).await;

    let resp = stack.get("/v1/views/stock?limit=1").await;

    assert_eq!((resp.status, resp.code().as_str()), (503, "overloaded"));
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert_eq!(stack.get("/healthz").await.status, 200, "probes are not shed");
}

#[tokio::test]
async fn a_request_past_its_deadline_gets_504() {
    let stack = Stack::start_with(|c| c.gateway.request_timeout = Duration::ZERO).await;

    let resp = stack.post("/v1/commands/stock/bolt@main/receive", r#"{"qty": 1}"#).await;

    assert_eq!((resp.status, resp.code().as_str()), (504, "timeout"));
}

#[tokio::test]
async fn a_service_that_is_not_running_gets_503_naming_it() {
    let stack = Stack::start_with(|c| c.services = vec!["catalog", "gateway"]).await;

    let view = stack.get("/v1/views/stock/bolt@main").await;
    let command = stack.post("/v1/commands/stock/bolt@main/receive", r#"{"qty": 1}"#).await;

    assert_eq!((view.status, view.json()["unavailable"].as_str()), (503, Some("projector")), "{}", view.json());
    assert_eq!(view.header("retry-after"), Some("2"));
    assert_eq!(command.status, 503, "{}", command.json());
    assert!(command.json()["detail"].as_str().unwrap().contains("stock"), "{}", command.json());
}

#[tokio::test]
async fn with_the_bus_down_requests_get_503_naming_nats_and_status_says_down() {
    let mut stack = Stack::start().await;
    stack.server.kill();

    // The client notices the dead connection within moments; ask until it has.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let resp = loop {
        let resp = stack.get("/v1/views/stock/bolt@main").await;
        if resp.status == 503 || std::time::Instant::now() > deadline {
            break resp;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let status = stack.get("/status").await;

    assert_eq!((resp.status, resp.json()["unavailable"].as_str()), (503, Some("nats")), "{}", resp.json());
    assert_eq!((status.status, status.json()["status"].as_str()), (503, Some("down")));
}
