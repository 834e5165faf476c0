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
