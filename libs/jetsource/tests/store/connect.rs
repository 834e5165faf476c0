//! Connecting as NATS users configure it: user and password, token, nkey seed file, TLS with a
//! CA and a client certificate; a setting that cannot be used is an error naming it.

use std::path::Path;
use std::process::Command;

use jetsource::{ConnectError, NatsAuth, connect_with};
use jetsource_testkit::NatsServer;

fn server_with(extra: String) -> NatsServer {
    NatsServer::start_with(move |config| config.extra = extra.clone())
}

#[tokio::test]
async fn user_and_password_token_and_nkey_authenticate_and_a_wrong_one_is_refused() {
    let user =
        NatsServer::start_with(|c| c.extra = "authorization { users = [ {user: app, password: s3cret} ] }".into());
    let ok = NatsAuth { user: Some(("app".into(), "s3cret".into())), ..Default::default() };
    connect_with(&user.url(), "t", &ok).await.unwrap();
    let wrong = NatsAuth { user: Some(("app".into(), "nope".into())), ..Default::default() };
    let refused = connect_with(&user.url(), "t", &wrong).await.unwrap_err();
    assert!(matches!(refused, ConnectError::Unreachable { .. }), "{refused}");
    assert!(connect_with(&user.url(), "t", &NatsAuth::default()).await.is_err(), "no credentials");

    let token = server_with("authorization { token: t0ken }".into());
    connect_with(&token.url(), "t", &NatsAuth { token: Some("t0ken".into()), ..Default::default() }).await.unwrap();

    let pair = nkeys::KeyPair::new_user();
    let nkey = server_with(format!("authorization {{ users = [ {{nkey: {}}} ] }}", pair.public_key()));
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("user.nk");
    std::fs::write(&seed, pair.seed().unwrap()).unwrap();
    connect_with(&nkey.url(), "t", &NatsAuth { nkey: Some(seed), ..Default::default() }).await.unwrap();
}

#[tokio::test]
async fn a_setting_that_cannot_be_used_names_itself() {
    let server = NatsServer::start();
    let creds = NatsAuth { creds: Some("/nonexistent/app.creds".into()), ..Default::default() };
    let error = connect_with(&server.url(), "t", &creds).await.unwrap_err().to_string();
    assert!(error.starts_with("NATS_CREDS /nonexistent/app.creds:"), "{error}");
    let ca = NatsAuth { ca: Some("/nonexistent/ca.pem".into()), ..Default::default() };
    let error = connect_with(&server.url(), "t", &ca).await.unwrap_err().to_string();
    assert!(error.starts_with("NATS_CA /nonexistent/ca.pem:"), "{error}");
}

/// `openssl` with `args` in `dir`.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, signed by the CA.
fn certificates(dir: &Path) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    openssl(
        dir,
        &[&["req", "-x509"][..], &ec, &["-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", "/CN=test-ca"]]
            .concat(),
    );
    for (name, ext) in [
        ("server", "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ] {
        let (key, csr, pem, extfile) =
            (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
        std::fs::write(dir.join(&extfile), ext).unwrap();
        openssl(dir, &[&["req"][..], &ec, &["-keyout", &key, "-out", &csr, "-subj", &format!("/CN={name}")]].concat());
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "1",
                "-extfile",
                &extfile,
            ],
        );
    }
}

#[tokio::test]
async fn tls_with_a_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let file = |name: &str| dir.path().join(name);
    let tls = format!(
        "tls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?}, verify: true }}",
        file("server.pem"),
        file("server.key"),
        file("ca.pem")
    );
    let server = server_with(tls);
    let auth = NatsAuth {
        ca: Some(file("ca.pem")),
        client_cert: Some((file("client.pem"), file("client.key"))),
        ..Default::default()
    };
    let client = connect_with(&server.url(), "t", &auth).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.query_account().await.unwrap();
    // Without the client certificate the server refuses; without the CA the client does.
    let no_client_cert = NatsAuth { ca: Some(file("ca.pem")), ..Default::default() };
    assert!(connect_with(&server.url(), "t", &no_client_cert).await.is_err());
    let no_ca = NatsAuth { client_cert: auth.client_cert.clone(), ..Default::default() };
    assert!(connect_with(&server.url(), "t", &no_ca).await.is_err());
}

/// A NATS JWT (v2) of `claims` about `subject`, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, nats: serde_json::Value) -> String {
    use base64::Engine as _;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header = e.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let iat = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        "jti": format!("test{iat}{subject}"), "iat": iat, "iss": issuer.public_key(), "name": "test", "sub": subject, "nats": nats,
    });
    let body = format!("{header}.{}", e.encode(claims.to_string()));
    let signature = issuer.sign(body.as_bytes()).unwrap();
    format!("{body}.{}", e.encode(signature))
}

#[tokio::test]
async fn a_credentials_file_authenticates_against_an_operator_mode_server() {
    // An operator, an account it signed, a user the account signed: what `nsc` would make
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let operator_jwt = jwt(&operator, &operator.public_key(), serde_json::json!({"type": "operator", "version": 2}));
    let account_jwt = jwt(
        &operator,
        &account.public_key(),
        serde_json::json!({"type": "account", "version": 2,
        "limits": {"subs": -1, "conn": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
                   "mem_storage": -1, "disk_storage": -1, "streams": -1, "consumer": -1}}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        serde_json::json!({"type": "user", "version": 2,
        "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}),
    );
    // JetStream (which the test servers run) needs a system account in operator mode.
    let system = nkeys::KeyPair::new_account();
    let system_jwt = jwt(&operator, &system.public_key(), serde_json::json!({"type": "account", "version": 2}));
    let config = format!(
        "operator: {operator_jwt:?}\nsystem_account: {sys}\nresolver: MEMORY\n\
         resolver_preload: {{ {}: {account_jwt:?}, {sys}: {system_jwt:?} }}\n",
        account.public_key(),
        sys = system.public_key(),
    );
    let server = server_with(config);
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("app.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();

    // Act and assert: the creds file connects; nothing else does
    let client =
        connect_with(&server.url(), "t", &NatsAuth { creds: Some(creds), ..Default::default() }).await.unwrap();
    client.flush().await.unwrap();
    assert!(connect_with(&server.url(), "t", &NatsAuth::default()).await.is_err());
}
