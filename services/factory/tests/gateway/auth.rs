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
            jwt: Some(JwtConfig {
                key: JwtKey::Hs256(Secret::new(SECRET)),
                issuer: None,
                audience: None,
                role_claim: None,
            }),
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
            jwt: Some(JwtConfig {
                key: JwtKey::PublicPem(public),
                issuer: Some("idp".into()),
                audience: None,
                role_claim: None,
            }),
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
    let factory = crate::support::Spawned(up(&keys).spawn().unwrap());
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
    drop(factory);
    // the same through variables: keys inline, an HS256 secret
    let mut inline = up(&dir.path().join("none"));
    inline
        .env_remove("FACTORY_API_KEYS_FILE")
        .env_remove("FACTORY_JWT_PUBLIC_KEY_FILE")
        .env("FACTORY_API_KEYS", "ci:admin:admin-key-0123456789")
        .env("FACTORY_JWT_HS256_SECRET", SECRET);
    let factory = crate::support::Spawned(inline.spawn().unwrap());
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
    drop(factory);
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

/// An OpenID provider as the test runs it: discovery under its issuer URL, and a key set the
/// test changes; it counts the key set's fetches.
struct Provider {
    issuer: String,
    keys: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Provider {
    async fn start() -> Self {
        use warp::Filter;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}/realms/factory", listener.local_addr().unwrap());
        let keys = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let fetches = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let doc = serde_json::json!({"issuer": issuer, "jwks_uri": format!("{issuer}/protocol/openid-connect/certs")});
        let discovery = warp::path!("realms" / "factory" / ".well-known" / "openid-configuration")
            .map(move || warp::reply::json(&doc));
        let (served, counted) = (keys.clone(), fetches.clone());
        let certs = warp::path!("realms" / "factory" / "protocol" / "openid-connect" / "certs").map(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // An encryption key beside the signing keys, as Keycloak serves it.
            let mut keys = served.lock().unwrap().clone();
            keys.push(serde_json::json!({"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc", "n": "AQAB", "e": "AQAB"}));
            warp::reply::json(&serde_json::json!({ "keys": keys }))
        });
        tokio::spawn(warp::serve(warp::get().and(discovery.or(certs))).incoming(listener).run());
        Self { issuer, keys, fetches }
    }

    fn serve(&self, keys: &[&SigningKey]) {
        *self.keys.lock().unwrap() = keys.iter().map(|k| k.jwk()).collect();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A P-256 key the provider signs with, by key id.
struct SigningKey {
    kid: &'static str,
    pair: ring::signature::EcdsaKeyPair,
}

impl SigningKey {
    fn new(kid: &'static str) -> Self {
        use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        Self { kid, pair }
    }

    fn jwk(&self) -> serde_json::Value {
        use ring::signature::KeyPair;
        let point = self.pair.public_key().as_ref();
        serde_json::json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
                           "x": b64(&point[1..33]), "y": b64(&point[33..65])})
    }

    fn bearer(&self, kid: &str, claims: serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid});
        let head = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = self.pair.sign(&ring::rand::SystemRandom::new(), head.as_bytes()).unwrap();
        format!("Bearer {head}.{}", b64(sig.as_ref()))
    }
}

// Multi-threaded: the requests below block their thread while the provider must answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oidc_provider_is_found_by_discovery_and_its_key_rotation_followed() {
    // Arrange: a provider with key "a", and `factory up` configured as for Keycloak
    let provider = Provider::start().await;
    let (a, b) = (SigningKey::new("a"), SigningKey::new("b"));
    provider.serve(&[&a]);
    let server = jetsource_testkit::NatsServer::start();
    let port = jetsource_testkit::server::free_port().unwrap();
    let factory = std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["up", "--nats-url", &server.url(), "--http", &format!("127.0.0.1:{port}"), "--log", "error"])
        .env("FACTORY_OIDC_ISSUER", &provider.issuer)
        .env("FACTORY_JWT_AUDIENCE", "factory")
        .env("FACTORY_JWT_ROLE_CLAIM", "realm_access.roles")
        .env("FACTORY_JWT_JWKS_REFRESH", "2")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let factory = crate::support::Spawned(factory);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while jetsource_testkit::server::http_status(port, "/readyz") != Some(200) {
        assert!(std::time::Instant::now() < deadline, "factory up did not become ready");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let claims = |roles: serde_json::Value| {
        serde_json::json!({"iss": provider.issuer, "aud": ["factory", "account"], "sub": "erin", "exp": later(),
                           "realm_access": {"roles": roles}})
    };
    let operator = claims(serde_json::json!(["offline_access", "operator"]));
    let command = "/v1/commands/stock/bolt@main/receive";
    let send = |bearer: String| status_of(port, "POST", command, &[("Authorization", &bearer)], r#"{"qty": 1}"#);

    // Act + Assert: key "a" with the role at the configured path
    let with_a = send(a.bearer("a", operator.clone()));
    let role_elsewhere = send(
        a.bearer("a", serde_json::json!({"iss": provider.issuer, "aud": "factory", "role": "admin", "exp": later()})),
    );
    let other_issuer = send(a.bearer("a", {
        let mut c = operator.clone();
        c["iss"] = "https://elsewhere".into();
        c
    }));
    assert_eq!((with_a, role_elsewhere, other_issuer), (200, 401, 401));

    // The provider rotates: "b" joins; a token signed with it is let in at once (the unknown
    // key id fetches the set again), while "a" still works
    provider.serve(&[&a, &b]);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(send(b.bearer("b", operator.clone())), 200, "a token of the new key");
    assert_eq!(send(a.bearer("a", operator.clone())), 200, "the old key during the overlap");

    // Unknown key ids cannot make the gateway hammer the provider: a burst of them costs a fetch
    let before = provider.fetches();
    let burst: Vec<u16> = (0..20).map(|i| send(b.bearer(&format!("forged-{i}"), operator.clone()))).collect();
    assert!(burst.iter().all(|s| *s == 401), "{burst:?}");
    assert!(provider.fetches() - before <= 3, "{} fetches for 20 unknown key ids", provider.fetches() - before);

    // "a" is retired: after the next refresh its tokens are refused, "b" goes on
    provider.serve(&[&b]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while send(a.bearer("a", operator.clone())) != 401 {
        assert!(std::time::Instant::now() < deadline, "the retired key was still accepted");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(send(b.bearer("b", operator.clone())), 200);
    drop(factory);

    // A provider that cannot be reached stops the start, naming its URL
    let unreachable = std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["up", "--nats-url", &server.url(), "--http", &format!("127.0.0.1:{port}"), "--log", "error"])
        .env("FACTORY_OIDC_ISSUER", "http://127.0.0.1:1/realms/none")
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.contains("http://127.0.0.1:1/realms/none/.well-known/openid-configuration"), "{stderr}");
}

#[tokio::test]
async fn each_caller_has_its_own_rate_and_global_overload_is_503() {
    let stack = Stack::start_with(|c| {
        c.gateway.auth = AuthConfig { jwt: None, api_keys: keys() };
        c.gateway.rate_limit = Some(jetsource_http::config::RateLimit {
            per_second: std::num::NonZeroU32::new(1).unwrap(),
            burst: std::num::NonZeroU32::new(3).unwrap(),
        });
    })
    .await;
    let read = |key: &'static str| {
        let stack = &stack;
        async move { stack.call("GET", "/v1/views/stock?limit=1", &[("x-api-key", key)], b"").await }
    };

    // Act: one caller reads until it is limited (its burst of 3, then about one a second)
    let mut passed = 0;
    let limited = loop {
        let resp = read("viewer-key-0123456789").await;
        if resp.status != 200 {
            break resp;
        }
        passed += 1;
        assert!(passed < 20, "never limited");
    };
    let other = read("admin-key-0123456789").await;

    // Assert
    assert!(passed >= 3, "the burst is let through: {passed}");
    assert_eq!((limited.status, limited.code().as_str()), (429, "rate_limited"), "{}", limited.json());
    assert!(limited.header("retry-after").and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s >= 1));
    assert!(limited.json()["detail"].as_str().unwrap().contains("viewer-bot"), "{}", limited.json());
    assert_eq!(other.status, 200, "another caller is not limited by the first");
}
