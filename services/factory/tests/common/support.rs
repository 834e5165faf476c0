//! A running factory (all command services) on a test nats-server, and a NATS client to
//! talk to it like any user would.

use std::time::Duration;

use async_nats::{Client, HeaderMap};
use factory::app::{App, AppConfig};
use jetsource_runtime::Shutdown;
use jetsource_testkit::{NatsCluster, NatsServer};
use serde_json::Value;

pub struct Factory {
    pub server: Nats,
    pub client: Client,
    apps: Vec<(Shutdown, tokio::task::JoinHandle<()>)>,
}

/// The NATS a factory runs on: one server (R1), or a 3-node cluster whose streams have three
/// replicas (R3).
pub enum Nats {
    Server(Box<NatsServer>),
    Cluster(NatsCluster),
}

impl Nats {
    pub fn url(&self) -> String {
        match self {
            Nats::Server(server) => server.url(),
            Nats::Cluster(cluster) => cluster.urls(),
        }
    }

    fn replicas(&self) -> Option<usize> {
        match self {
            Nats::Server(_) => None,
            Nats::Cluster(_) => Some(3),
        }
    }
}

/// A process this test started (`factory run ...`), killed when dropped.
pub struct Process(pub std::process::Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A reply as a client sees it.
#[derive(Debug)]
pub struct Reply {
    pub headers: Option<HeaderMap>,
    pub body: Value,
}

impl Reply {
    /// The `Nats-Service-Error-Code` header, if it is an error.
    pub fn error_code(&self) -> Option<u16> {
        self.header("Nats-Service-Error-Code").and_then(|v| v.parse().ok())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.as_ref().and_then(|h| h.get(name)).map(|v| v.as_str().to_owned())
    }

    /// The `code` of an error body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert!(self.error_code().is_none(), "expected success, got {self:?}");
        &self.body
    }
}

impl Factory {
    /// A server and one process running every service but the gateway.
    pub async fn start() -> Self {
        Self::start_without(&[]).await
    }

    /// A server and one process running every service but the gateway and `left_out`.
    pub async fn start_without(left_out: &[&str]) -> Self {
        let mut factory = Self::server_only().await;
        let services =
            factory::app::all_services().into_iter().filter(|s| *s != "gateway" && !left_out.contains(s)).collect();
        factory.spawn(services, |_| {}).await;
        factory
    }

    /// A server with nothing running yet.
    pub async fn server_only() -> Self {
        Self::on(Nats::Server(Box::new(NatsServer::start()))).await
    }

    /// A 3-node cluster with nothing running yet; processes provision R3 streams.
    pub async fn cluster_only() -> Self {
        Self::on(Nats::Cluster(NatsCluster::start())).await
    }

    async fn on(server: Nats) -> Self {
        let client = jetsource::connect(&server.url(), "factory-tests").await.expect("connect");
        Self { server, client, apps: Vec::new() }
    }

    /// Starts one more process with `services`; `tune` may change its config.
    pub async fn spawn(&mut self, services: Vec<&'static str>, tune: impl FnOnce(&mut AppConfig)) {
        let mut config = AppConfig::new(self.server.url(), services);
        config.replicas = self.server.replicas();
        tune(&mut config);
        let app = App::build(config).await.expect("app builds");
        let shutdown = Shutdown::new();
        let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        self.apps.push((shutdown, running));
    }

    /// Stops every process started with [`Factory::spawn`] and waits until they are down (the
    /// server keeps running).
    pub async fn stop_all(&mut self) {
        for (shutdown, running) in self.apps.drain(..) {
            shutdown.trigger();
            let _ = running.await;
        }
    }

    /// Starts `factory run <services>` as a separate process against this server.
    pub fn run_process(&self, services: &[&str]) -> Process {
        self.run_process_with_env(services, &[])
    }

    /// Starts `factory run <services>` as a separate process with extra environment.
    pub fn run_process_with_env(&self, services: &[&str], env: &[(&str, &str)]) -> Process {
        let port = jetsource_testkit::server::free_port().unwrap();
        // FACTORY_TEST_LOG=info shows what the processes do (warnings only by default).
        let log = std::env::var("FACTORY_TEST_LOG").unwrap_or_else(|_| "warn".into());
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
            .arg("run")
            .args(services)
            .args(["--nats-url", &self.server.url(), "--http", &format!("127.0.0.1:{port}"), "--log", &log])
            .envs(env.iter().copied())
            .stdout(if std::env::var_os("FACTORY_TEST_LOG").is_some() {
                std::process::Stdio::inherit()
            } else {
                std::process::Stdio::null()
            })
            .spawn()
            .expect("factory binary");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while jetsource_testkit::server::http_status(port, "/readyz") != Some(200) {
            assert!(std::time::Instant::now() < deadline, "factory run did not become ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        Process(child)
    }

    /// Sends a command and returns the reply.
    pub async fn send(&self, subject: &str, body: &str) -> Reply {
        self.send_with(subject, body, &[]).await
    }

    /// Sends a command with headers.
    pub async fn send_with(&self, subject: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, *v);
        }
        let request = self.client.request_with_headers(subject.to_owned(), map, body.to_owned().into());
        let message = tokio::time::timeout(Duration::from_secs(10), request)
            .await
            .expect("no reply within 10 s")
            .expect("request");
        let body = serde_json::from_slice(&message.payload).unwrap_or(Value::Null);
        Reply { headers: message.headers, body }
    }

    /// Defines product `widget` (4 bolts + 1 plate per unit) and receives stock.
    pub async fn seed(&self) {
        self.send(
            "cmd.product.widget.define",
            r#"{"name": "Widget", "bom": [{"sku": "bolt", "qty": 4}, {"sku": "plate", "qty": 1}]}"#,
        )
        .await
        .ok();
        self.send("cmd.stock.bolt@main.receive", r#"{"qty": 100}"#).await.ok();
        self.send("cmd.stock.plate@main.receive", r#"{"qty": 10}"#).await.ok();
    }

    /// Waits (at most 60 s) until queries read version `version` of `view`: a rebuild switched.
    pub async fn wait_view_version(&self, view: &str, version: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let status = self.query("projector.status", "").await;
            let entry = status.ok()["views"].as_array().unwrap().iter().find(|v| v["view"] == view).unwrap().clone();
            if entry["version"] == version {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no switch: {entry}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends a query and returns the reply.
    pub async fn query(&self, subject: &str, body: &str) -> Reply {
        self.send_with(subject, body, &[]).await
    }

    /// Sends a query with headers.
    pub async fn query_with(&self, subject: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
        self.send_with(subject, body, headers).await
    }
}

impl Drop for Factory {
    fn drop(&mut self) {
        for (app, _) in &self.apps {
            app.trigger();
        }
    }
}

/// `GET path` on a local port over HTTP/1.0: the body (what a scraper or `curl` sees).
pub async fn http_get(port: u16, path: &'static str) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default()
    })
    .await
    .unwrap()
}
