//! A whole factory with its gateway on a free port, and a plain HTTP client.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use factory::app::{App, AppConfig};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jetsource_runtime::Shutdown;
use jetsource_testkit::NatsServer;
use serde_json::Value;

/// A child process killed (and reaped) when dropped, so a failing test leaves none behind.
pub struct Spawned(pub std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Stack {
    pub server: NatsServer,
    pub http: SocketAddr,
    pub client: async_nats::Client,
    shutdown: Shutdown,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }
}

impl Stack {
    /// Everything, auth off (loopback).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Everything, with `tune` applied to the process config.
    pub async fn start_with(tune: impl FnOnce(&mut AppConfig)) -> Self {
        // As the binary does: spans with W3C trace ids (nothing exported). Only the first call
        // of a process installs it; with nextest each test is its own process.
        let config = jetsource_telemetry::TelemetryConfig {
            service: "factory".into(),
            instance: "test".into(),
            filter: Some("error".into()),
            ship: Some("off".into()),
            env_prefix: "FACTORY".into(),
        };
        let _ = jetsource_telemetry::Telemetry::init(&config);
        let server = NatsServer::start();
        let mut config = AppConfig::new(server.url(), factory::app::all_services());
        config.http = Some("127.0.0.1:0".parse().unwrap());
        tune(&mut config);
        let app = App::build(config).await.expect("app builds");
        let shutdown = Shutdown::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            app.serve(stop, move |addr| {
                let _ = tx.send(addr);
            })
            .await
            .expect("serves");
        });
        let http = rx.await.unwrap().expect("an HTTP address");
        let client = async_nats::connect(server.url()).await.unwrap();
        Self { server, http, client, shutdown }
    }

    /// A request; `headers` as (name, value); gives up after 15 s.
    pub async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut request = hyper::Request::builder().method(method).uri(format!("http://{}{path}", self.http));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::copy_from_slice(body))).expect("request builds");
        let exchange = async {
            let response = client.request(request).await.expect("an HTTP response");
            let (parts, body) = response.into_parts();
            let body = body.collect().await.expect("a body").to_bytes();
            Resp { status: parts.status.as_u16(), headers: parts.headers, body }
        };
        tokio::time::timeout(Duration::from_secs(15), exchange).await.unwrap_or_else(|_| panic!("{method} {path} hung"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call("GET", path, &[], b"").await
    }

    pub async fn post(&self, path: &str, body: &str) -> Resp {
        self.call("POST", path, &[("content-type", "application/json")], body.as_bytes()).await
    }

    /// A command that must succeed; its reply.
    pub async fn command(&self, path: &str, body: &str) -> Value {
        let resp = self.post(path, body).await;
        assert!(resp.status == 200 || resp.status == 202, "{path}: {resp:?} {}", String::from_utf8_lossy(&resp.body));
        resp.json()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}
