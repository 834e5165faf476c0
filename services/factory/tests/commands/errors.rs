use std::time::Duration;

use crate::support::Factory;

#[tokio::test]
async fn bad_input_gets_its_specific_error_and_the_services_keep_serving() {
    let factory = Factory::start().await;
    let huge = format!(r#"{{"qty": 1, "source": "{}"}}"#, "x".repeat(2 * 1024 * 1024));
    let cases: Vec<(&str, &str, u16, &str, &str)> = vec![
        ("cmd.stock.bolt@main.receive", r#"{"qty": 1"#, 400, "invalid", "malformed JSON"),
        ("cmd.stock.bolt@main.receive", "nonsense", 400, "invalid", "malformed JSON"),
        ("cmd.stock.bolt@main.receive", r#"{"qty": 1, "colour": "red"}"#, 400, "invalid", "unknown field `colour`"),
        ("cmd.stock.bolt@main.receive", r#"{"qty": "ten"}"#, 400, "invalid", "qty: invalid type"),
        ("cmd.stock.bolt@main.receive", r#"{"qty": 0}"#, 400, "invalid", "qty: must be a positive integer"),
        ("cmd.stock.bolt@main.receive", r#"{}"#, 400, "invalid", "missing field `qty`"),
        ("cmd.stock.bolt.receive", r#"{"qty": 1}"#, 400, "invalid", "<sku>@<warehouse>"),
        ("cmd.stock.bo$lt@main.receive", r#"{"qty": 1}"#, 400, "invalid", "contains '$'"),
        ("cmd.stock.a.b@main.receive", r#"{"qty": 1}"#, 400, "invalid", "ids cannot contain dots"),
        ("cmd.product.p1.define", r#"{"name": "P", "bom": [{"sku": "a", "qty": -2}]}"#, 400, "invalid", "bom[0].qty"),
        ("cmd.widget.w1.make", "{}", 404, "not_found", "unknown aggregate type \"widget\""),
        ("cmd.stock.bolt@main.teleport", "{}", 404, "not_found", "stock has no command \"teleport\""),
        ("cmd.order.nope.start", "{}", 404, "not_found", "no such order"),
        ("cmd.stock.bolt@main.receive", &huge, 400, "invalid", "the limit is 262144"),
    ];
    for (subject, body, status, code, needle) in cases {
        // Act
        let reply = factory.send(subject, body).await;
        // Assert: the error, then a well-formed command still works
        let message = reply.body["message"].as_str().unwrap_or_default();
        assert_eq!((reply.error_code(), reply.code()), (Some(status), code), "{subject}: {reply:?}");
        assert!(message.contains(needle), "{subject}: {message}");
        assert_eq!(reply.header("Nats-Service-Error").as_deref(), Some(message));
        factory.send("cmd.stock.bolt@main.receive", r#"{"qty": 1}"#).await.ok();
    }
}

#[tokio::test]
async fn a_conflict_that_outlasts_the_retries_answers_conflict() {
    // Arrange: process A caches bolt@main and may try once; process B moves it on behind A's back
    let mut factory = Factory::server_only().await;
    factory.spawn(vec!["stock"], |c| c.commands.repository.max_attempts = 1).await;
    factory.send("cmd.stock.bolt@main.receive", r#"{"qty": 5}"#).await.ok();
    let other = jetsource::Repository::<factory_domain::stock::Stock>::new(
        jetsource::EventStore::new(factory.client.clone(), Default::default()),
        None,
        Default::default(),
    );
    let id = jetsource::AggregateId::new("bolt@main").unwrap();
    let receive = factory_domain::stock::StockCommand::parse("receive", br#"{"qty": 1}"#).unwrap();
    other.execute(&id, receive, &jetsource::CommandContext::new()).await.unwrap();

    // Act: A appends on its stale cached state
    let reply = factory.send("cmd.stock.bolt@main.receive", r#"{"qty": 1}"#).await;

    // Assert
    assert_eq!((reply.error_code(), reply.code()), (Some(409), "conflict"), "{reply:?}");
}

#[tokio::test]
async fn a_command_for_a_service_that_is_not_running_answers_unavailable() {
    let mut factory = Factory::server_only().await;
    factory.spawn(vec!["catalog"], |_| {}).await;

    let reply = factory.send("cmd.stock.bolt@main.receive", r#"{"qty": 1}"#).await;

    assert_eq!((reply.error_code(), reply.code()), (Some(503), "unavailable"), "{reply:?}");
    assert!(reply.body["message"].as_str().unwrap().contains("no stock service is running"));
}

#[tokio::test]
async fn a_command_with_nothing_running_fails_fast_naming_what_to_start() {
    // Arrange: a server, no factory
    let factory = Factory::server_only().await;

    // Act: the typed client and `factory send`, as a user would run them
    let client = jetsource_runtime::wire::Client::new(factory.client.clone(), Duration::from_secs(30));
    let request = jetsource_runtime::wire::CommandRequest::new("stock", "bolt@main", "receive", r#"{"qty": 1}"#);
    let typed = tokio::time::timeout(Duration::from_secs(10), client.command(&request))
        .await
        .expect("answered at once, not after the 30 s deadline");
    let cli = std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["send", "stock", "bolt@main", "receive", r#"{"qty": 1}"#, "--nats-url", &factory.server.url()])
        .output()
        .unwrap();

    // Assert: `unavailable` with the subject named (a timeout would be `timeout`), and the CLI
    // says what to start and fails
    let error = typed.expect_err("nothing can take it");
    assert_eq!(error.code(), jetsource::ErrorCode::Unavailable);
    assert_eq!(
        error,
        jetsource_runtime::wire::CallError::NoResponders { subject: "cmd.stock.bolt@main.receive".into() }
    );
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert!(!cli.status.success());
    assert!(stderr.contains("nothing answers cmd.stock.bolt@main.receive: is `factory up` running?"), "{stderr}");
}
