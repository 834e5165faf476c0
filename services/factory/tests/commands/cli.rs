//! The command line as a user runs it: the real binary, its output and exit codes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use crate::support::Factory;

fn factory(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_factory")).args(args).output().expect("the factory binary")
}

#[test]
fn arguments_that_take_known_values_list_them_and_refuse_others() {
    let help = factory(&["send", "--help"]);
    assert!(String::from_utf8_lossy(&help.stdout).contains("[possible values: product, stock, order]"));
    let levels = factory(&["logs", "--help"]);
    assert!(String::from_utf8_lossy(&levels.stdout).contains("[possible values: trace, debug, info, warn, error]"));
    for (args, listed) in [
        (&["query", "nope"][..], "stock, warehouse, orders, products, commands"),
        (&["inspect", "widget", "x"][..], "product, stock, order"),
        (&["logs", "--level", "loud"][..], "trace, debug, info, warn, error"),
        (&["projections", "rebuild", "nope"][..], "stock, warehouse"),
        (&["archive", "run", "--type", "nope"][..], "product, stock, order"),
    ] {
        let out = factory(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("invalid value") && stderr.contains(listed), "{args:?}: {stderr}");
    }
}

#[test]
fn completions_are_printed_for_each_shell() {
    for (shell, marker) in [("bash", "_factory()"), ("zsh", "#compdef factory"), ("fish", "complete -c factory")] {
        let out = factory(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && script.contains(marker), "{shell}: {script:.200}");
        assert!(script.contains("archive") && script.contains("forget"), "{shell}: every command is completed");
    }
    assert_eq!(factory(&["completions", "tcsh"]).status.code(), Some(2));
}

#[tokio::test]
async fn logs_are_readable_lines_when_asked_and_a_bad_format_stops_the_start() {
    let factory_server = Factory::server_only().await;
    let url = factory_server.server.url();
    let run = |format: &str| {
        Command::new(env!("CARGO_BIN_EXE_factory"))
            .args(["run", "stock", "--nats-url", &url, "--http", "127.0.0.1:0", "--log", "info"])
            .env("FACTORY_LOG_FORMAT", format)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let bad = run("xml").wait_with_output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains(r#"FACTORY_LOG_FORMAT="xml" is not a log format"#));

    let mut text = run("text");
    let mut lines = BufReader::new(text.stdout.take().unwrap()).lines();
    let first = tokio::task::spawn_blocking(move || lines.next()).await.unwrap();
    let _ = text.kill();
    let _ = text.wait();
    let first = first.expect("a log line").unwrap();
    assert!(!first.starts_with('{') && first.contains(" INFO "), "{first}");
}

#[test]
fn the_standard_nats_variables_reach_every_command() {
    let server = jetsource_testkit::NatsServer::start_with(|c| {
        c.extra = "authorization { users = [ {user: ops, password: \"pa ss\"} ] }".into();
    });
    let status = |env: &[(&str, &str)]| {
        Command::new(env!("CARGO_BIN_EXE_factory"))
            .arg("status")
            .env("NATS_URL", server.url())
            .env_remove("FACTORY_NATS_URL")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    };
    // NATS_URL and NATS_USER/NATS_PASSWORD: connected (degraded: nothing runs), exit 1
    let authenticated = status(&[("NATS_USER", "ops"), ("NATS_PASSWORD", "pa ss")]);
    let report: serde_json::Value = serde_json::from_slice(&authenticated.stdout).unwrap_or_default();
    assert_eq!(report["nats"]["connected"], true, "{}", String::from_utf8_lossy(&authenticated.stderr));
    // Without them the server refuses, and the error says where it tried
    let refused = status(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success() && stderr.contains("cannot reach NATS at nats://127.0.0.1"), "{stderr}");
    // Half a setting is named
    let half = status(&[("NATS_USER", "ops")]);
    assert!(String::from_utf8_lossy(&half.stderr).contains("NATS_USER: NATS_PASSWORD is needed with it"));
    let missing = status(&[("NATS_CREDS", "/nonexistent/ops.creds")]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NATS_CREDS /nonexistent/ops.creds"));
}

/// Runs `factory <args>` against `url`; (success, stdout, stderr).
fn run_against(url: &str, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(args)
        .env("NATS_URL", url)
        .env_remove("FACTORY_NATS_URL")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into(),
        String::from_utf8_lossy(&output.stderr).into(),
    )
}

#[tokio::test]
async fn the_tour_runs_as_the_readme_shows_against_the_nats_server_factory_up_manages() {
    // Arrange: `factory up` with no --nats-url, so it starts and owns a nats-server
    let dir = tempfile::tempdir().unwrap();
    let free_port = || jetsource_testkit::server::free_port().unwrap();
    let (nats, monitor, http) = (free_port(), free_port(), free_port());
    let mut up = super::support::Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
            .args(["up", "--data-dir", dir.path().to_str().unwrap(), "--log", "error"])
            .args(["--nats-port", &nats.to_string(), "--nats-monitor-port", &monitor.to_string()])
            .args(["--http", &format!("127.0.0.1:{http}")])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while jetsource_testkit::server::http_status(http, "/readyz") != Some(200) {
        assert!(std::time::Instant::now() < deadline, "factory up did not become ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let url = format!("nats://127.0.0.1:{nats}");
    let json = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap_or_else(|e| panic!("{e}: {text}"));

    // Act / Assert, step by step as the README's tour
    let bom = r#"{"name":"Widget","bom":[{"sku":"bolt","qty":4},{"sku":"plate","qty":1}]}"#;
    let (ok, out, _) = run_against(&url, &["send", "product", "widget", "define", bom]);
    assert!(ok && json(&out)["events"][0]["type"] == "ProductDefined", "{out}");
    let (ok, out, _) = run_against(&url, &["send", "stock", "bolt@main", "receive", r#"{"qty":100}"#]);
    assert!(ok && json(&out)["version"] == 1, "{out}");
    let (ok, out, err) =
        run_against(&url, &["send", "stock", "bolt@main", "reserve", r#"{"qty":500,"order_id":"o-1"}"#]);
    assert!(!ok && json(&out)["reason"] == "insufficient_stock", "{out}");
    assert!(err.contains("rejected: insufficient stock: 500 requested, 100 available"), "{err}");
    let (ok, out, _) = run_against(&url, &["send", "stock", "bolt@main", "ship", r#"{"qty":"ten"}"#]);
    assert!(!ok && json(&out)["code"] == "invalid", "{out}");
    let queried = loop {
        let (ok, out, _) = run_against(&url, &["query", "stock", "bolt@main"]);
        if ok && json(&out)["on_hand"] == 100 {
            break json(&out);
        }
        assert!(std::time::Instant::now() < deadline, "the stock view never showed the receipt: {out}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(queried["available"], 100);
    let (ok, out, _) = run_against(&url, &["inspect", "stock", "bolt@main", "--events"]);
    let inspected = json(&out);
    assert!(
        ok && inspected["version"] == 1 && inspected["events"][0]["type"] == "factory.stock.StockReceived",
        "{out}"
    );
    let (ok, out, _) = run_against(&url, &["projections", "status"]);
    assert!(ok && out.contains("stock") && out.contains("commands"), "{out}");
    let (ok, out, _) = run_against(&url, &["status"]);
    assert!(ok && json(&out)["status"] == "ok", "{out}");
    let (ok, out, err) = run_against(&url, &["provision", "--dry-run"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("EVENTS") && !out.to_lowercase().contains("drift"), "{out}");
    let (ok, out, err) = run_against(&url, &["logs", "--limit", "5"]);
    assert!(ok, "{out}{err}");
    let k8s = std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["k8s", "--check", "--dir"])
        .arg(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../k8s"))
        .output()
        .unwrap();
    assert!(k8s.status.success(), "{}", String::from_utf8_lossy(&k8s.stderr));

    // and Ctrl-C (SIGTERM) stops it cleanly, the nats-server it started with it
    let term = Command::new("kill").args(["-TERM", &up.0.id().to_string()]).status().unwrap();
    assert!(term.success());
    let exited = up.0.wait().unwrap();
    assert!(exited.success(), "factory up exited with {exited}");
    let gone = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", nats)).is_ok() {
        assert!(std::time::Instant::now() < gone, "the managed nats-server outlived factory up");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
