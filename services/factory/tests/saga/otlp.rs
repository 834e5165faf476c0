//! OTLP as a collector receives it by default: `factory up` exports spans and log records over
//! gRPC to a TLS endpoint (a receiver this test runs, with a certificate from a CA the process
//! trusts through `OTEL_EXPORTER_OTLP_CERTIFICATE`), with `OTEL_RESOURCE_ATTRIBUTES` on both —
//! set only by the standard variables.

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

#[tokio::test]
async fn spans_and_logs_reach_an_otlp_grpc_receiver_over_tls() {
    // Arrange: a CA, a certificate for localhost signed by it, the receiver serving it
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().signed_by(&key, &issuer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();

    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert.pem(), key.serialize_pem()));
    let incoming = futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    });
    let serving = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(TraceServiceServer::new(receiver.clone()))
        .add_service(LogsServiceServer::new(receiver.clone()))
        .serve_with_incoming(incoming);
    tokio::spawn(serving);

    let server = jetsource_testkit::NatsServer::start();
    let http = jetsource_testkit::server::free_port().unwrap();
    let _factory = Process(
        std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
            .args(["up", "--nats-url", &server.url(), "--http", &format!("127.0.0.1:{http}"), "--log", "info"])
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("https://localhost:{port}"))
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .env("OTEL_EXPORTER_OTLP_CERTIFICATE", &ca_file)
            .env("OTEL_LOGS_EXPORTER", "otlp")
            .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=otlp-test,team=factory")
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_BLRP_SCHEDULE_DELAY", "100")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("factory binary"),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while jetsource_testkit::server::http_status(http, "/readyz") != Some(200) {
        assert!(std::time::Instant::now() < deadline, "factory up did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Act: one command in the client's trace
    let addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
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
