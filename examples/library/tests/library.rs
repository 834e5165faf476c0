//! The library end to end on a real nats-server: commands over NATS and HTTP, the rule that
//! spans aggregates, the `loans` view with read-your-writes, its own OpenAPI document and status.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use jetsource::topology::Topology;
use jetsource_cli::process::{Process, ProcessConfig};
use jetsource_runtime::Shutdown;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Library {
    server: Arc<jetsource_testkit::NatsServer>,
    client: async_nats::Client,
    http: std::net::SocketAddr,
    stop: Shutdown,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Library {
    async fn start() -> Self {
        Self::on(Arc::new(jetsource_testkit::NatsServer::start()), library::app()).await
    }

    /// Every library service in this process, against `server`.
    async fn on(server: Arc<jetsource_testkit::NatsServer>, app: jetsource_runtime::App) -> Self {
        let app = Arc::new(app);
        let topology = Topology::parse(library::TOPOLOGY).unwrap();
        let mut config = ProcessConfig::new(server.url(), app.service_names(), topology);
        config.http = Some("127.0.0.1:0".parse().unwrap());
        let process = Process::build(app, config).await.expect("the library starts");
        let stop = Shutdown::new();
        let (bound, addr) = tokio::sync::oneshot::channel();
        let serving = stop.clone();
        let running = tokio::spawn(async move {
            let _ = process.serve(serving, |http| bound.send(http).unwrap_or_default()).await;
        });
        let http = addr.await.unwrap().unwrap();
        let client = async_nats::connect(server.url()).await.unwrap();
        Self { server, client, http, stop, running: Some(running) }
    }

    /// Stops every service and waits until they are down.
    async fn stop(mut self) -> Arc<jetsource_testkit::NatsServer> {
        self.stop.trigger();
        if let Some(running) = self.running.take() {
            running.await.unwrap();
        }
        Arc::clone(&self.server)
    }

    /// A request over NATS: the reply's error code (if any) and body.
    async fn send(&self, subject: &str, body: &str, headers: &[(&str, &str)]) -> (Option<String>, Value) {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, *v);
        }
        let request = self.client.request_with_headers(subject.to_owned(), map, body.to_owned().into());
        let reply = tokio::time::timeout(Duration::from_secs(10), request).await.unwrap().unwrap();
        let code = reply.headers.as_ref().and_then(|h| h.get("Nats-Service-Error-Code")).map(|v| v.to_string());
        (code, serde_json::from_slice(&reply.payload).unwrap_or(Value::Null))
    }

    /// An HTTP/1.1 request: status and JSON body.
    async fn http(&self, method: &str, path: &str, body: &str) -> (u16, Value) {
        let mut stream = tokio::net::TcpStream::connect(self.http).await.unwrap();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: library\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8_lossy(&raw);
        let (head, rest) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(rest).unwrap_or(Value::Null))
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

#[tokio::test]
async fn a_book_is_lent_only_to_an_active_member_and_the_loans_view_follows() {
    // Arrange
    let library = Library::start().await;
    let ok = |(code, body): (Option<String>, Value)| {
        assert!(code.is_none(), "expected success, got {code:?} {body}");
        body
    };
    ok(library.send("cmd.book.dune.add", r#"{"title": "Dune", "author": "Frank Herbert"}"#, &[]).await);
    ok(library.send("cmd.member.ada.join", r#"{"name": "Ada"}"#, &[]).await);
    ok(library.send("cmd.member.bob.join", r#"{"name": "Bob"}"#, &[]).await);
    ok(library.send("cmd.member.bob.suspend", r#"{"reason": "overdue"}"#, &[]).await);

    // Act
    let lent = ok(library.send("cmd.loan.l-1.open", r#"{"book_id": "dune", "member_id": "ada"}"#, &[]).await);
    let (suspended, refused) =
        library.send("cmd.loan.l-2.open", r#"{"book_id": "dune", "member_id": "bob"}"#, &[]).await;
    let (missing, unknown) = library.send("cmd.loan.l-3.open", r#"{"book_id": "nope", "member_id": "ada"}"#, &[]).await;
    let seq = lent["stream_seq"].to_string();
    let loans = ok(library.send("qry.loans.ada", "", &[("Min-Seq", seq.as_str())]).await);

    // Assert
    assert_eq!(lent["events"][0]["type"], "LoanOpened");
    assert_eq!((suspended.as_deref(), refused["reason"].as_str()), (Some("422"), Some("member_inactive")));
    assert_eq!((missing.as_deref(), unknown["reason"].as_str()), (Some("422"), Some("book_unavailable")));
    assert_eq!(loans["open"]["l-1"], "dune", "{loans}");
}

#[tokio::test]
async fn the_library_serves_http_with_its_own_openapi_document_and_status() {
    // Arrange
    let library = Library::start().await;

    // Act
    let (added, reply) =
        library.http("POST", "/v1/commands/book/emma/add", r#"{"title": "Emma", "author": "Austen"}"#).await;
    let (bad, problem) = library.http("POST", "/v1/commands/book/emma2/add", r#"{"title": "Emma", "pages": 3}"#).await;
    let (unknown, not_found) = library.http("POST", "/v1/commands/order/o-1/plan", "{}").await;
    let (_, openapi) = library.http("GET", "/openapi.json", "").await;
    let (_, status) = library.http("GET", "/status", "").await;

    // Assert
    assert_eq!((added, reply["status"].as_str()), (200, Some("succeeded")));
    assert_eq!(bad, 400, "{problem}");
    assert!(problem["detail"].as_str().unwrap().contains("unknown field `pages`"), "{problem}");
    assert_eq!(unknown, 404);
    assert!(not_found["detail"].as_str().unwrap().contains("known types: book, member, loan"), "{not_found}");
    let open = &openapi["paths"]["/v1/commands/loan/{id}/open"]["post"]["requestBody"]["content"]["application/json"];
    assert_eq!(open["schema"]["required"], serde_json::json!(["book_id", "member_id"]), "{open}");
    assert!(openapi["paths"]["/v1/commands/product/{id}/define"].is_null(), "no factory in the library");
    let running: Vec<&str> = status["services"].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(running, ["catalogue", "due_dates", "lending", "logbook", "members", "projector"], "{status}");
    assert_eq!(status["missing"], serde_json::json!([]), "{status}");
}

#[tokio::test]
async fn a_deadline_set_before_every_process_stopped_fires_once_after_they_restart() {
    // Arrange: loans of 2 s; one book still out, one returned at once
    let library = Library::on(
        Arc::new(jetsource_testkit::NatsServer::start()),
        library::app_with_loan_period(time::Duration::seconds(2)),
    )
    .await;
    let ok = |(code, body): (Option<String>, Value)| {
        assert!(code.is_none(), "expected success, got {code:?} {body}");
        body
    };
    ok(library.send("cmd.book.dune.add", r#"{"title": "Dune", "author": "Frank Herbert"}"#, &[]).await);
    ok(library.send("cmd.book.emma.add", r#"{"title": "Emma", "author": "Jane Austen"}"#, &[]).await);
    ok(library.send("cmd.member.ada.join", r#"{"name": "Ada"}"#, &[]).await);
    ok(library.send("cmd.loan.out.open", r#"{"book_id": "dune", "member_id": "ada"}"#, &[]).await);
    ok(library.send("cmd.loan.back.open", r#"{"book_id": "emma", "member_id": "ada"}"#, &[]).await);
    ok(library.send("cmd.loan.back.close", "{}", &[]).await);
    let js = async_nats::jetstream::new(library.client.clone());
    let scheduled = |subject: &'static str| {
        let js = js.clone();
        async move {
            let timers = js.get_stream("TIMERS").await.unwrap();
            futures::TryStreamExt::try_collect::<Vec<(String, usize)>>(
                timers.info_with_subjects(subject).await.unwrap(),
            )
            .await
            .unwrap()
            .len()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while scheduled("sched.due_dates.out.due").await == 0 || scheduled("sched.due_dates.back.due").await != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the deadline of `out` was not scheduled (or `back`'s not cancelled)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Act: stop every process across the deadline, then start them again
    let server = library.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fired_while_down = scheduled("timer.due_dates.out.due").await;
    assert_eq!(fired_while_down, 1, "the deadline came while every process was down");
    let library = Library::on(server, library::app_with_loan_period(time::Duration::seconds(2))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let loans = loop {
        let (_, loans) = library.send("qry.loans.ada", "", &[]).await;
        if loans["overdue"].as_array().is_some_and(|o| !o.is_empty()) {
            break loans;
        }
        assert!(std::time::Instant::now() < deadline, "the loan was not marked overdue: {loans}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Assert: fired by NATS while nothing ran; handled once after the restart; the returned
    // loan never
    assert_eq!(loans["overdue"], serde_json::json!(["out"]), "{loans}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = jetsource::EventStore::new(library.client.clone(), Default::default());
    let names = |subject: &'static str| {
        let store = store.clone();
        async move {
            store
                .read(subject, 1, 100)
                .await
                .unwrap()
                .iter()
                .map(|e| e.attributes().unwrap().event_name().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("evt.loan.out").await, ["LoanOpened", "LoanOverdue"]);
    assert_eq!(names("evt.loan.back").await, ["LoanOpened", "LoanClosed"]);
}
