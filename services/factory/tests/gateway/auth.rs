use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jetsource_http::auth::Role;
use jetsource_http::config::{ApiKey, AuthConfig, JwtConfig, JwtKey, Secret};
use ring::hmac;

use crate::support::Stack;

pub(crate) const SECRET: &str = "a-test-secret-of-at-least-32-characters";

fn keys() -> Vec<ApiKey> {
    [
        ("viewer-bot", Role::Viewer, "viewer-key-0123456789"),
        ("ops", Role::Operator, "operator-key-0123456789"),
        ("root", Role::Admin, "admin-key-0123456789"),
    ]
    .into_iter()
    .map(|(name, role, key)| ApiKey { name: name.into(), role, key: Secret::new(key) })
    .collect()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn later() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp() + 600
}

pub(crate) fn hs256(claims: serde_json::Value) -> String {
    let head = format!("{}.{}", b64(br#"{"alg":"HS256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, SECRET.as_bytes()), head.as_bytes());
    format!("{head}.{}", b64(tag.as_ref()))
}

async fn secured() -> Stack {
    Stack::start_with(|c| {
        c.gateway.auth = AuthConfig {
            jwt: Some(JwtConfig { key: JwtKey::Hs256(Secret::new(SECRET)), issuer: None, audience: None }),
            api_keys: keys(),
        };
    })
    .await
}

/// Status of (read, command, admin) for the given credential header.
async fn matrix(stack: &Stack, credential: Option<(&str, &str)>) -> (u16, u16, u16) {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(credential);
    let read = stack.call("GET", "/v1/views/stock?limit=1", &headers, b"").await.status;
    let command = stack.call("POST", "/v1/commands/stock/bolt@main/receive", &headers, br#"{"qty": 1}"#).await.status;
    let admin = stack.call("POST", "/v1/projections/stock/retry", &headers, b"{}").await.status;
    (read, command, admin)
}

#[tokio::test]
async fn roles_allow_reads_commands_and_operations_in_turn() {
    let stack = secured().await;
    let operator_jwt =
        format!("Bearer {}", hs256(serde_json::json!({"sub": "alice", "role": "operator", "exp": later()})));

    assert_eq!(matrix(&stack, None).await, (401, 401, 401));
    assert_eq!(matrix(&stack, Some(("x-api-key", "viewer-key-0123456789"))).await, (200, 403, 403));
    assert_eq!(matrix(&stack, Some(("x-api-key", "operator-key-0123456789"))).await, (200, 200, 403));
    assert_eq!(matrix(&stack, Some(("x-api-key", "admin-key-0123456789"))).await, (200, 200, 200));
    assert_eq!(matrix(&stack, Some(("authorization", &operator_jwt))).await, (200, 200, 403));
    assert_eq!(stack.get("/healthz").await.status, 200, "probes need no credentials");
    assert_eq!(stack.get("/status").await.status, 401);
}

#[tokio::test]
async fn bad_credentials_are_401_problems_and_missing_roles_403() {
    let stack = secured().await;
    let expired = format!("Bearer {}", hs256(serde_json::json!({"sub": "a", "role": "admin", "exp": 1})));
    let forged =
        format!("Bearer {}AAAA", &hs256(serde_json::json!({"sub": "a", "role": "admin", "exp": later()}))[..60]);

    for (name, value, needle) in [
        ("x-api-key", "not-a-key", "unknown API key"),
        ("authorization", expired.as_str(), "expired"),
        ("authorization", forged.as_str(), "invalid credentials"),
        ("authorization", "Basic dXNlcjpwYXNz", "Bearer"),
    ] {
        let resp = stack.call("GET", "/v1/views/stock?limit=1", &[(name, value)], b"").await;
        assert_eq!((resp.status, resp.code().as_str()), (401, "unauthorized"), "{value}");
        assert_eq!(resp.header("www-authenticate"), Some("Bearer"));
        assert!(resp.json()["detail"].as_str().unwrap().contains(needle), "{}", resp.json());
    }
    // A validly signed token whose `sub` holds CR/LF once dropped the connection (the actor goes
    // into a NATS header): now a 401 that says why, and an upper-case scheme is a scheme.
    let crlf = format!("Bearer {}", hs256(serde_json::json!({"sub": "a\r\nx: y", "role": "admin", "exp": later()})));
    let upper = format!("BEARER {}", hs256(serde_json::json!({"sub": "carol", "role": "admin", "exp": later()})));
    let command = |token: String| {
        let stack = &stack;
        async move {
            let headers = [("authorization", token.as_str()), ("content-type", "application/json")];
            stack.call("POST", "/v1/commands/stock/bolt@main/receive", &headers, br#"{"qty": 1}"#).await
        }
    };
    let refused = command(crlf).await;
    assert_eq!((refused.status, refused.code().as_str()), (401, "unauthorized"), "{}", refused.json());
    assert!(refused.json()["detail"].as_str().unwrap().contains("control characters"), "{}", refused.json());
    assert_eq!(command(upper).await.status, 200);
    let viewer = stack
        .call(
            "POST",
            "/v1/commands/stock/bolt@main/receive",
            &[("x-api-key", "viewer-key-0123456789"), ("content-type", "application/json")],
            b"{}",
        )
        .await;
    assert_eq!((viewer.status, viewer.code().as_str()), (403, "forbidden"));
}

#[tokio::test]
async fn the_authenticated_caller_is_the_actor_of_its_events() {
    let stack = secured().await;
    let headers = [("x-api-key", "operator-key-0123456789"), ("content-type", "application/json")];
    stack.call("POST", "/v1/commands/stock/bolt@main/receive", &headers, br#"{"qty": 3}"#).await;

    let history = stack.call("GET", "/v1/aggregates/stock/bolt@main/events", &headers, b"").await;

    assert_eq!(history.json()["events"][0]["actor"], "ops");

    // A name outside printable ASCII is percent-encoded in `ce-actor` and read back whole.
    let jose =
        format!("Bearer {}", hs256(serde_json::json!({"sub": "José Núñez", "role": "operator", "exp": later()})));
    let headers = [("authorization", jose.as_str()), ("content-type", "application/json")];
    let sent = stack.call("POST", "/v1/commands/stock/bolt@main/receive", &headers, br#"{"qty": 1}"#).await;
    assert_eq!(sent.status, 200, "{}", sent.json());
    let history = stack.call("GET", "/v1/aggregates/stock/bolt@main/events", &headers, b"").await;
    assert_eq!(history.json()["events"][1]["actor"], "José Núñez", "{}", history.json());
    let js = async_nats::jetstream::new(stack.client.clone());
    let stream = js.get_stream("EVENTS").await.unwrap();
    let raw = stream.direct_get(2).await.unwrap();
    assert_eq!(raw.headers.get("ce-actor").map(|v| v.as_str()), Some("Jos%C3%A9%20N%C3%BA%C3%B1ez"));
}

#[tokio::test]
async fn rs256_tokens_are_checked_against_the_public_key() {
    let public = include_str!("../../../../libs/http/tests/fixtures/rs256-public.pem").to_owned();
    let private = include_bytes!("../../../../libs/http/tests/fixtures/rs256-private.pk8");
    let stack = Stack::start_with(|c| {
        c.gateway.auth = AuthConfig {
            jwt: Some(JwtConfig { key: JwtKey::PublicPem(public), issuer: Some("idp".into()), audience: None }),
            api_keys: vec![],
        };
    })
    .await;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(private).unwrap();
    let head = format!(
        "{}.{}",
        b64(br#"{"alg":"RS256"}"#),
        b64(serde_json::json!({"sub": "carol", "role": "viewer", "exp": later(), "iss": "idp"}).to_string().as_bytes())
    );
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), head.as_bytes(), &mut sig).unwrap();
    let token = format!("Bearer {head}.{}", b64(&sig));

    let resp = stack.call("GET", "/v1/views/stock?limit=1", &[("authorization", &token)], b"").await;

    assert_eq!(resp.status, 200, "{}", resp.json());
}

#[tokio::test]
async fn listing_beyond_loopback_without_authentication_is_refused() {
    let server = jetsource_testkit::NatsServer::start();
    let mut config = factory::app::AppConfig::new(server.url(), vec!["gateway"]);
    config.http = Some("0.0.0.0:0".parse().unwrap());

    let refused = factory::app::App::build(config.clone()).await;
    config.gateway.auth.api_keys = keys();
    let allowed = factory::app::App::build(config).await;

    assert!(refused.err().unwrap().to_string().contains("refusing to listen on 0.0.0.0"));
    assert!(allowed.is_ok());
}

#[tokio::test]
async fn an_unauthenticated_caller_is_answered_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stack = secured().await;
    // The request announces 200 kB and sends none of it: the edge used to wait for the body
    // (and buffer it) before it looked at the credentials.
    let mut socket = tokio::net::TcpStream::connect(stack.http).await.unwrap();
    let head = "POST /v1/commands/stock/bolt@main/receive HTTP/1.1\r\nhost: x\r\n\
                content-type: application/json\r\ncontent-length: 200000\r\n\r\n";
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0_u8; 4096];
    let read = tokio::time::timeout(std::time::Duration::from_secs(30), socket.read(&mut answer))
        .await
        .expect("no answer while the body was withheld")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("unauthorized"), "{answer}");
}

/// `method path` with `headers` against a local port, over HTTP/1.0: the status.
fn status_of(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

fn es256_pem(point: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let prefix = "3059301306072a8648ce3d020106082a8648ce3d030107034200";
    let mut der: Vec<u8> =
        (0..prefix.len()).step_by(2).map(|i| u8::from_str_radix(&prefix[i..i + 2], 16).unwrap()).collect();
    der.extend_from_slice(point);
    format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(der))
}

#[tokio::test]
async fn the_binary_reads_api_keys_and_an_es256_key_with_issuer_and_audience_from_its_environment() {
    // Arrange: key files as an operator writes them, and `factory up` reading them
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("api-keys");
    std::fs::write(
        &keys,
        "# name:role:key\nwatcher:viewer:viewer-key-0123456789\nrunner:operator:operator-key-0123456789\n",
    )
    .unwrap();
    let public = dir.path().join("es256.pem");
    std::fs::write(&public, es256_pem(pair.public_key().as_ref())).unwrap();
    let server = jetsource_testkit::NatsServer::start();
    let port = jetsource_testkit::server::free_port().unwrap();
    let up = |keys_file: &std::path::Path| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_factory"));
        command
            .args(["up", "--nats-url", &server.url(), "--http", &format!("127.0.0.1:{port}"), "--log", "error"])
            .env("FACTORY_API_KEYS_FILE", keys_file)
            .env("FACTORY_JWT_PUBLIC_KEY_FILE", &public)
            .env("FACTORY_JWT_ISSUER", "https://idp.example")
            .env("FACTORY_JWT_AUDIENCE", "factory")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        command
    };
    let mut factory = up(&keys).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while jetsource_testkit::server::http_status(port, "/readyz") != Some(200) {
        assert!(std::time::Instant::now() < deadline, "factory up did not become ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let token = |claims: serde_json::Value| {
        let head = format!("{}.{}", b64(br#"{"alg":"ES256","typ":"JWT"}"#), b64(claims.to_string().as_bytes()));
        format!("Bearer {head}.{}", b64(pair.sign(&rng, head.as_bytes()).unwrap().as_ref()))
    };
    let claims = |iss: &str, aud: &str| serde_json::json!({"sub": "dana", "role": "operator", "exp": later(), "iss": iss, "aud": aud});
    let command = "/v1/commands/stock/bolt@main/receive";
    let view = "/v1/views/stock?limit=1";

    // Act
    let answers = [
        status_of(port, "GET", view, &[("X-Api-Key", "viewer-key-0123456789")], ""),
        status_of(port, "POST", command, &[("X-Api-Key", "viewer-key-0123456789")], r#"{"qty": 1}"#),
        status_of(port, "POST", command, &[("X-Api-Key", "operator-key-0123456789")], r#"{"qty": 1}"#),
        status_of(
            port,
            "POST",
            command,
            &[("Authorization", &token(claims("https://idp.example", "factory")))],
            r#"{"qty": 1}"#,
        ),
        status_of(
            port,
            "POST",
            command,
            &[("Authorization", &token(claims("https://idp.example", "other")))],
            r#"{"qty": 1}"#,
        ),
        status_of(
            port,
            "POST",
            command,
            &[("Authorization", &token(claims("https://elsewhere", "factory")))],
            r#"{"qty": 1}"#,
        ),
        status_of(port, "GET", view, &[], ""),
    ];
    let _ = factory.kill();
    let _ = factory.wait();
    // the same through variables: keys inline, an HS256 secret
    let mut inline = up(&dir.path().join("none"));
    inline
        .env_remove("FACTORY_API_KEYS_FILE")
        .env_remove("FACTORY_JWT_PUBLIC_KEY_FILE")
        .env("FACTORY_API_KEYS", "ci:admin:admin-key-0123456789")
        .env("FACTORY_JWT_HS256_SECRET", SECRET);
    let mut factory = inline.spawn().unwrap();
    while jetsource_testkit::server::http_status(port, "/readyz") != Some(200) {
        assert!(std::time::Instant::now() < deadline, "factory up did not become ready again");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let hs = format!("Bearer {}", hs256(claims("https://idp.example", "factory")));
    let inline_answers = [
        status_of(port, "POST", command, &[("X-Api-Key", "admin-key-0123456789")], r#"{"qty": 1}"#),
        status_of(port, "POST", command, &[("Authorization", &hs)], r#"{"qty": 1}"#),
        status_of(port, "POST", command, &[("X-Api-Key", "viewer-key-0123456789")], r#"{"qty": 1}"#),
    ];
    let _ = factory.kill();
    let _ = factory.wait();
    std::fs::write(&keys, "watcher:viewer:short\n").unwrap();
    let refused = up(&keys).output().unwrap();

    // Assert: the keys from the file with their roles, the ES256 key with its issuer and
    // audience; a malformed key file stops the start naming what is wrong
    assert_eq!(answers, [200, 403, 200, 200, 401, 401, 401]);
    assert_eq!(inline_answers, [200, 200, 401], "FACTORY_API_KEYS and FACTORY_JWT_HS256_SECRET");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("API key entry must be name:role:key"), "{stderr}");
}
