//! `/healthz` (alive), `/readyz` (NATS connected, JetStream answering, every check of the
//! services in this process passing) and `/metrics` (Prometheus text) for any service.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::Client;
use jetsource_telemetry::Metrics;
use serde_json::{Map, Value, json};
use warp::Filter;
use warp::http::{Response, StatusCode, header};

use crate::Shutdown;

type Checks = Arc<Mutex<Vec<(String, Arc<AtomicBool>)>>>;

/// Named readiness flags the services of a process raise once they are bound (a projector's
/// consumers, the gateway's listener).
#[derive(Clone)]
pub struct Readiness {
    client: Client,
    checks: Checks,
}

impl Readiness {
    /// Readiness of a process connected through `client`.
    pub fn new(client: Client) -> Self {
        Self { client, checks: Arc::default() }
    }

    /// Adds a check named `name`, not ready until the returned flag is raised.
    pub fn check(&self, name: &str) -> Arc<AtomicBool> {
        let flag = Arc::new(AtomicBool::new(false));
        self.checks.lock().unwrap_or_else(PoisonError::into_inner).push((name.to_owned(), Arc::clone(&flag)));
        flag
    }

    /// True while the NATS connection is up.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Runs every check: `(ready, details)`.
    pub async fn evaluate(&self) -> (bool, Value) {
        let mut details = Map::new();
        let connected = self.client.connection_state() == async_nats::connection::State::Connected;
        details.insert("nats".into(), json!(if connected { "connected" } else { "disconnected" }));
        let js = async_nats::jetstream::new(self.client.clone());
        let jetstream =
            connected && matches!(tokio::time::timeout(Duration::from_secs(2), js.query_account()).await, Ok(Ok(_)));
        details.insert("jetstream".into(), json!(if jetstream { "answering" } else { "not answering" }));
        let mut ready = connected && jetstream;
        for (name, flag) in self.checks.lock().unwrap_or_else(PoisonError::into_inner).iter() {
            let ok = flag.load(Ordering::Relaxed);
            ready &= ok;
            details.insert(name.clone(), json!(if ok { "ready" } else { "not ready" }));
        }
        (ready, Value::Object(details))
    }
}

/// The three operational routes.
pub fn routes(
    readiness: Readiness,
    metrics: Arc<Metrics>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone + Send + Sync + 'static {
    let scraped = readiness.clone();
    let healthz =
        warp::path!("healthz").and(warp::get()).map(|| json_reply(StatusCode::OK, &json!({"status": "alive"})));
    let readyz = warp::path!("readyz").and(warp::get()).then(move || {
        let readiness = readiness.clone();
        async move {
            let (ready, checks) = readiness.evaluate().await;
            let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            json_reply(status, &json!({"status": if ready { "ready" } else { "not ready" }, "checks": checks}))
        }
    });
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        metrics.nats_connected.set(i64::from(scraped.connected()));
        let body = metrics.render();
        Response::builder()
            // What `render` writes is OpenMetrics 1.0 (it ends in `# EOF`), not the 0.0.4 text.
            .header(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(body)
            .map(warp::Reply::into_response)
            .unwrap_or_else(warp::Reply::into_response)
    });
    healthz.or(readyz).unify().or(metrics).unify()
}

/// Serves the operational routes alone (a service without the gateway): unknown paths answer
/// 404 and wrong methods 405, as JSON.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve_operational(
    addr: SocketAddr,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let routes = routes(readiness, metrics).recover(|rejection: warp::Rejection| async move {
        let (status, text) = if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
            (StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        } else {
            (StatusCode::NOT_FOUND, "not found: this port serves /healthz, /readyz and /metrics")
        };
        Ok::<_, std::convert::Infallible>(json_reply(status, &json!({"status": status.as_u16(), "detail": text})))
    });
    serve(addr, routes, shutdown).await
}

/// A JSON response with `status`.
pub fn json_reply(status: StatusCode, body: &Value) -> warp::reply::Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .map(warp::Reply::into_response)
        .unwrap_or_else(warp::Reply::into_response)
}

/// Binds `addr` and serves `routes` until `shutdown`; returns the bound address (port 0 picks
/// a free one) and the server task.
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve<F, R>(
    addr: SocketAddr,
    routes: F,
    shutdown: Shutdown,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)>
where
    F: Filter<Extract = (R,), Error = std::convert::Infallible> + Clone + Send + Sync + 'static,
    R: warp::Reply,
{
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let server = warp::serve(routes).incoming(listener).graceful(async move { shutdown.wait().await });
    Ok((local, tokio::spawn(server.run())))
}
