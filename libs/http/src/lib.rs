//! # jetsource-http
//!
//! The HTTP edge of a jetsource application (warp), built from its registry: commands, views with read-your-writes, aggregates with
//! time travel, history as CloudEvents, command status (also as Server-Sent Events),
//! projections, `/status`, `/healthz`, `/readyz`, `/metrics` and `/openapi.json`. It speaks to
//! the services over NATS only, authenticates (bearer JWT or API keys, roles `viewer`,
//! `operator`, `admin`), and protects itself (body size, JSON only, in-flight bound, timeout).
//! Every error is an RFC 9457 problem document with a stable `code` and the `trace_id`.
//!
//! ## Layout
//! - [`config`], [`auth`], [`problem`]: what it needs, who may call, how errors look;
//! - `edge`: the wrapper every route runs in (auth, load shedding, timeout, trace, metrics);
//! - `routes`: one module per resource, built from the application's registry.
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let nats = jetsource_testkit::NatsServer::start();
//! # let client = async_nats::connect(nats.url()).await?;
//! use std::sync::Arc;
//! let metrics = Arc::new(jetsource_telemetry::Metrics::new("example"));
//! let readiness = jetsource_runtime::health::Readiness::new(client.clone());
//! let app = std::sync::Arc::new(jetsource_runtime::App::new("example"));
//! let gateway = jetsource_http::Gateway::new(app, client, Default::default(), metrics, readiness)?;
//! let shutdown = jetsource_runtime::Shutdown::new();
//! let (addr, server) = gateway.serve(shutdown.clone()).await?;
//! println!("listening on http://{addr}");
//! let serving = tokio::spawn(server);
//! let live = tokio::task::spawn_blocking(move || jetsource_testkit::server::http_status(addr.port(), "/healthz")).await?;
//! assert_eq!(live, Some(200));
//! shutdown.trigger();
//! # let _ = serving.await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]
// `ErrorBody` and `Problem` are the error replies themselves, built once per failed request.
#![allow(clippy::result_large_err)]

mod admission;
pub mod auth;
pub mod config;
mod edge;
mod jwks;
pub mod openapi;
pub mod problem;
mod routes;
pub mod status;

use std::net::SocketAddr;
use std::sync::Arc;

use warp::Filter as _;

use async_nats::Client;
use jetsource::{EventStore, StoreConfig};
use jetsource_runtime::App;
use jetsource_runtime::Shutdown;
use jetsource_runtime::health::Readiness;
use jetsource_telemetry::Metrics;

pub use config::{AuthConfig, GatewayConfig};

/// The template of the OpenAPI 3.1 document; the served one is [`openapi::document`] of the
/// registry.
pub const OPENAPI: &str = openapi::TEMPLATE;

/// The gateway: configuration, connections and the authenticator.
pub struct Gateway {
    pub(crate) app: Arc<App>,
    pub(crate) client: Client,
    pub(crate) store: EventStore,
    pub(crate) auth: auth::Authenticator,
    pub(crate) config: GatewayConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) admission: Arc<admission::Admission>,
    /// Each caller's rate, when limited.
    pub(crate) rate_limiter: Option<governor::DefaultKeyedRateLimiter<String>>,
    pub(crate) readiness: Readiness,
    pub(crate) shutdown: Shutdown,
    /// The OpenAPI document served at `/openapi.json`, generated from the registry.
    pub(crate) openapi: String,
}

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Non-loopback address without authentication.
    #[error(
        "refusing to listen on {0} without authentication: configure <PREFIX>_JWT_HS256_SECRET, \
         <PREFIX>_JWT_PUBLIC_KEY_FILE or <PREFIX>_API_KEYS, or listen on a loopback address"
    )]
    Unprotected(SocketAddr),
    /// The authentication settings are unusable.
    #[error("authentication: {0}")]
    Auth(String),
    /// The address cannot be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

impl Gateway {
    /// A gateway over `client`.
    ///
    /// # Errors
    /// [`GatewayError::Unprotected`] when asked to listen beyond loopback without
    /// authentication, [`GatewayError::Auth`] when a key cannot be used.
    pub fn new(
        app: Arc<App>,
        client: Client,
        config: GatewayConfig,
        metrics: Arc<Metrics>,
        readiness: Readiness,
    ) -> Result<Arc<Self>, GatewayError> {
        if !config.auth.enabled() {
            if !config.addr.ip().is_loopback() {
                return Err(GatewayError::Unprotected(config.addr));
            }
            tracing::warn!(service = "gateway", addr = %config.addr, "authentication is off (loopback only): every caller is admin");
        }
        let auth = auth::Authenticator::new(config.auth.clone()).map_err(GatewayError::Auth)?;
        let store = EventStore::new(
            client.clone(),
            StoreConfig { app: app.name().to_owned(), service: "gateway".into(), ..Default::default() },
        );
        let openapi = openapi::document(&app, config.auth.enabled()).to_string();
        Ok(Arc::new(Self {
            openapi,
            app,
            admission: admission::Admission::new(
                config.max_in_flight,
                config.admission_wait,
                config.max_in_flight.saturating_mul(8),
                Some(Arc::clone(&metrics)),
            ),
            rate_limiter: config.rate_limit.map(|limit| {
                governor::RateLimiter::keyed(governor::Quota::per_second(limit.per_second).allow_burst(limit.burst))
            }),
            client,
            store,
            auth,
            config,
            metrics,
            readiness,
            shutdown: Shutdown::new(),
        }))
    }

    /// Binds the configured address and serves until `shutdown`; returns the bound address
    /// and the server task.
    ///
    /// # Errors
    /// [`GatewayError::Bind`].
    pub async fn serve(
        self: Arc<Self>,
        shutdown: Shutdown,
    ) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), GatewayError> {
        self.auth.start(shutdown.clone()).await.map_err(GatewayError::Auth)?;
        if self.rate_limiter.is_some() {
            // Callers whose cells are back to full are forgotten, so the limiter holds only the
            // recently active.
            let gw = Arc::clone(&self);
            let stop = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
                        () = stop.wait() => return,
                    }
                    if let Some(limiter) = &gw.rate_limiter {
                        limiter.retain_recent();
                        limiter.shrink_to_fit();
                    }
                }
            });
        }
        let addr = self.config.addr;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| GatewayError::Bind(addr, e))?;
        let bound = listener.local_addr().map_err(|e| GatewayError::Bind(addr, e))?;
        let routes: warp::filters::BoxedFilter<(warp::reply::Response,)> = match cors(&self.config.cors_origins) {
            Some(cors) => routes::all(Arc::clone(&self)).with(cors).map(warp::Reply::into_response).boxed(),
            None => routes::all(Arc::clone(&self)).boxed(),
        };
        let stop = shutdown.clone();
        let streams = self.shutdown.clone();
        let server = warp::serve(routes).incoming(listener).graceful(async move {
            stop.wait().await;
            streams.trigger(); // ends open event streams so the server can stop
        });
        tracing::info!(service = "gateway", addr = %bound, "listening");
        tokio::spawn(status::watch_services(
            Arc::clone(&self.app),
            self.client.clone(),
            Arc::clone(&self.metrics),
            shutdown,
        ));
        Ok((bound, tokio::spawn(server.run())))
    }
}

/// The CORS policy for `origins` (`*`: any), if any: preflights answered, the headers a
/// browser needs exposed.
fn cors(origins: &[String]) -> Option<warp::cors::Builder> {
    if origins.is_empty() {
        return None;
    }
    let builder = warp::cors()
        .allow_methods(["GET", "POST"])
        .allow_headers([
            "authorization",
            "content-type",
            "idempotency-key",
            "if-match",
            "traceparent",
            "consistency-token",
            "last-event-id",
            "x-api-key",
        ])
        .expose_headers(["etag", "location", "retry-after", "x-trace-id", "allow"])
        .max_age(600);
    Some(if origins.iter().any(|o| o == "*") {
        builder.allow_any_origin()
    } else {
        builder.allow_origins(origins.iter().map(String::as_str))
    })
}
