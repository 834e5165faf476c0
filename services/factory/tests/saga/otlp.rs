//! OTLP as a collector receives it: `factory up` exports spans and log records over gRPC, and
//! spans over HTTP (protobuf), each to a TLS endpoint (a receiver this test runs, with a
//! certificate from a CA the process trusts through `OTEL_EXPORTER_OTLP_CERTIFICATE`), with
//! `OTEL_RESOURCE_ATTRIBUTES` — set only by the standard variables.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue as Any, KeyValue};
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::eventually;
use crate::otel::post;
use crate::support::Process;

/// A span as received: trace id, name, resource attributes.
type Span = (String, String, Vec<(String, String)>);
/// A log record as received: body, resource attributes.
type Record = (String, Vec<(String, String)>);
/// An OTLP/HTTP request as received: path, content type, body.
type Export = (String, String, Vec<u8>);

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<(Vec<Span>, Vec<Record>)>>);

fn text(value: Option<&Any>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(AnyValue::StringValue(s)) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> Vec<(String, String)> {
    list.iter().map(|kv| (kv.key.clone(), text(kv.value.as_ref()))).collect()
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut received = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let attrs = attributes(&resource.resource.map(|r| r.attributes).unwrap_or_default());
            for span in resource.scope_spans.into_iter().flat_map(|s| s.spans) {
                let trace_id = span.trace_id.iter().map(|b| format!("{b:02x}")).collect();
                received.0.push((trace_id, span.name, attrs.clone()));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tonic::async_trait]
impl LogsService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut received = self.0.lock().unwrap();
        for resource in request.into_inner().resource_logs {
            let attrs = attributes(&resource.resource.map(|r| r.attributes).unwrap_or_default());
            for record in resource.scope_logs.into_iter().flat_map(|s| s.log_records) {
                received.1.push((text(record.body.as_ref()), attrs.clone()));
            }
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse { partial_success: None }))
    }
}

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// A CA (its PEM in a file, as `OTEL_EXPORTER_OTLP_CERTIFICATE` names it) and a certificate
/// for `localhost` it signed, with its key.
struct Certificates {
    _dir: tempfile::TempDir,
    ca_file: std::path::PathBuf,
    cert: String,
    key: String,
}

impl Certificates {
    fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        Self { _dir: dir, ca_file, cert: cert.pem(), key: key.serialize_pem() }
    }
}

/// `factory up` on `server` with the given variables, ready; its HTTP address.
async fn factory_up(
    server: &jetsource_testkit::NatsServer,
    vars: &[(&str, &std::ffi::OsStr)],
) -> (Process, SocketAddr) {
    let http = jetsource_testkit::server::free_port().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_factory"));
    command
        .args(["up", "--nats-url", &server.url(), "--http", &format!("127.0.0.1:{http}"), "--log", "info"])
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "100")
        .stdout(std::process::Stdio::null());
    for (name, value) in vars {
        command.env(name, value);
    }
    let process = Process(command.spawn().expect("factory binary"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while jetsource_testkit::server::http_status(http, "/readyz") != Some(200) {
        assert!(std::time::Instant::now() < deadline, "factory up did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (process, format!("127.0.0.1:{http}").parse().unwrap())
}

#[tokio::test]
async fn spans_and_logs_reach_an_otlp_grpc_receiver_over_tls() {
    // Arrange: a CA, a certificate for localhost signed by it, the receiver serving it
    let tls = Certificates::new();
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server_tls = ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert, &tls.key));
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    let serving = Server::builder()
        .tls_config(server_tls)
        .unwrap()
        .add_service(TraceServiceServer::new(receiver.clone()))
        .add_service(LogsServiceServer::new(receiver.clone()))
        .serve_with_incoming(incoming);
    tokio::spawn(serving);

    let server = jetsource_testkit::NatsServer::start();
    let endpoint = format!("https://localhost:{port}");
    let (_factory, addr) = factory_up(
        &server,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_ref()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".as_ref()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", tls.ca_file.as_os_str()),
            ("OTEL_LOGS_EXPORTER", "otlp".as_ref()),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=otlp-test,team=factory".as_ref()),
        ],
    )
    .await;

    // Act: one command in the client's trace
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    post(addr, "/v1/commands/stock/bolt@main/receive", &[("traceparent", &traceparent)], r#"{"qty": 5}"#).await;

    // Assert: the command's spans, and log records, with the resource the environment names
    let spans = eventually("the command's spans over gRPC", || async {
        let received = receiver.0.lock().unwrap();
        let spans: Vec<_> = received.0.iter().filter(|(t, _, _)| t == TRACE_ID).cloned().collect();
        (spans.len() >= 2).then_some(spans)
    })
    .await;
    let logs = eventually("log records over gRPC", || async {
        let received = receiver.0.lock().unwrap();
        received.1.iter().any(|(body, _)| body == "listening").then(|| received.1.clone())
    })
    .await;
    let resource = |attrs: &[(String, String)], key: &str| {
        attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    };
    for (_, name, attrs) in &spans {
        assert_eq!(resource(attrs, "deployment.environment"), "otlp-test", "{name}: {attrs:?}");
        assert_eq!(resource(attrs, "team"), "factory");
        assert_eq!(resource(attrs, "service.name"), "factory");
    }
    assert!(logs.iter().all(|(_, attrs)| resource(attrs, "deployment.environment") == "otlp-test"), "{logs:?}");
}

#[tokio::test]
async fn spans_reach_an_otlp_http_receiver_over_tls() {
    // Arrange: an OTLP/HTTP receiver behind TLS (HTTP/1.1, protobuf bodies kept by path)
    use prost::Message as _;
    use rustls_pki_types::pem::PemObject as _;
    use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
    let tls = Certificates::new();
    let certs: Vec<_> =
        rustls_pki_types::CertificateDer::pem_slice_iter(tls.cert.as_bytes()).map(Result::unwrap).collect();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(tls.key.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Arc<Mutex<Vec<Export>>> = Arc::default();
    let keep = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, keep) = (acceptor.clone(), Arc::clone(&keep));
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let mut stream = tokio::io::BufReader::new(stream);
                loop {
                    let mut line = String::new();
                    if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = line.split(' ').nth(1).unwrap_or_default().to_owned();
                    let (mut length, mut kind) = (0, String::new());
                    loop {
                        let mut header = String::new();
                        stream.read_line(&mut header).await.unwrap();
                        let header = header.trim_end();
                        if header.is_empty() {
                            break;
                        }
                        let (name, value) = header.split_once(':').unwrap_or_default();
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap(),
                            "content-type" => kind = value.trim().to_owned(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    stream.read_exact(&mut body).await.unwrap();
                    keep.lock().unwrap().push((path, kind, body));
                    let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
                }
            });
        }
    });
    let server = jetsource_testkit::NatsServer::start();
    let endpoint = format!("https://localhost:{port}");
    let (_factory, addr) = factory_up(
        &server,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_ref()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".as_ref()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", tls.ca_file.as_os_str()),
        ],
    )
    .await;

    // Act
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
    post(addr, "/v1/commands/stock/bolt@main/receive", &[("traceparent", &traceparent)], r#"{"qty": 5}"#).await;

    // Assert: protobuf exports on /v1/traces holding the command's spans
    let names = eventually("the command's spans over OTLP/HTTP with TLS", || async {
        let received = received.lock().unwrap();
        let names: Vec<String> = received
            .iter()
            .filter(|(path, kind, _)| path == "/v1/traces" && kind == "application/x-protobuf")
            .filter_map(|(_, _, body)| ExportTraceServiceRequest::decode(body.as_slice()).ok())
            .flat_map(|export| export.resource_spans)
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .filter(|span| span.trace_id.iter().map(|b| format!("{b:02x}")).collect::<String>() == TRACE_ID)
            .map(|span| span.name)
            .collect();
        (names.len() >= 2).then_some(names)
    })
    .await;
    assert!(names.iter().any(|n| n == "/v1/commands/{type}/{id}/{command}"), "the gateway's span: {names:?}");
    assert!(names.iter().any(|n| n == "jetsource.command"), "the stock service's span: {names:?}");
}
