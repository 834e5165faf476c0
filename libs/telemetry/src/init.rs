//! Setting up tracing once per process: JSON logs to stdout, OpenTelemetry spans with W3C
//! propagation, and OTLP export when the standard `OTEL_EXPORTER_OTLP_*` variables ask for it.

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tracing::Level;
use tracing_subscriber::filter::{FilterExt as _, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::json::{JsonLines, ServiceFields};
use crate::ship::{self, ShipLayer, Shipped, parse_level};

/// What to set up.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The process's service name (the application's name for all services in one process).
    pub service: String,
    /// This instance (`$HOSTNAME-<pid>`).
    pub instance: String,
    /// Log filter (`info`, `jetsource_runtime=debug`); then the variable named by
    /// [`TelemetryConfig::env_prefix`] + `_LOG`, then `RUST_LOG`, then `info`.
    pub filter: Option<String>,
    /// Lowest level shipped to the `LOGS` stream (`off`, `error`, `warn`, `info`, ...);
    /// `<PREFIX>_LOG_SHIP`, then `warn`.
    pub ship: Option<String>,
    /// Prefix of the application's environment variables (`SHOP` reads `SHOP_LOG` and `SHOP_LOG_SHIP`).
    pub env_prefix: String,
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter configuration is invalid.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// A global subscriber is already installed.
    #[error("tracing is already initialised in this process")]
    AlreadyInitialised,
    /// The log filter does not parse.
    #[error("log filter: {0}")]
    Filter(String),
}

/// The running telemetry; call [`Telemetry::shutdown`] at exit to flush spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
    shipping: std::sync::Mutex<Option<mpsc::Receiver<Shipped>>>,
    dropped: Arc<AtomicU64>,
}

/// An environment variable that is set and not blank.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_set(name: &str) -> bool {
    env(name).is_some()
}

/// The OTLP protocol the environment asks for, or why this build cannot honour it: a setting it
/// cannot carry out is an error at start, never spans silently dropped.
fn export_protocol(protocol: Option<&str>, endpoint: Option<&str>) -> Result<Protocol, TelemetryError> {
    if let Some(endpoint) = endpoint
        && endpoint.trim().to_ascii_lowercase().starts_with("https://")
    {
        return Err(TelemetryError::Exporter(format!(
            "endpoint {endpoint:?}: this build exports over plain HTTP only (no TLS client); \
             use an http:// endpoint (a collector sidecar or an in-cluster service)"
        )));
    }
    match protocol.map(str::trim) {
        None | Some("http/protobuf") => Ok(Protocol::HttpBinary),
        Some("http/json") => Ok(Protocol::HttpJson),
        Some("grpc") => Err(TelemetryError::Exporter(
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc: this build exports over OTLP/HTTP only; set \
             OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf and point the endpoint at the collector's \
             OTLP/HTTP port (4318)"
                .into(),
        )),
        Some(other) => Err(TelemetryError::Exporter(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not a protocol; use http/protobuf or http/json"
        ))),
    }
}

impl Telemetry {
    /// True when OTLP export is configured by the environment (`OTEL_EXPORTER_OTLP_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`).
    pub fn export_configured() -> bool {
        env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || env_set("OTEL_EXPORTER_OTLP_ENDPOINT")
    }

    /// Installs the global subscriber. Must run inside a multi-threaded Tokio runtime (the span
    /// batch processor is a Tokio task).
    ///
    /// Without an OTLP endpoint nothing is exported: spans still get W3C ids (logs, replies and
    /// events carry the trace) but no span data is kept.
    ///
    /// # Errors
    /// [`TelemetryError`].
    pub fn init(config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let service_name =
            std::env::var("OTEL_SERVICE_NAME").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| config.service.clone());
        let resource = Resource::builder()
            .with_service_name(service_name)
            .with_attribute(KeyValue::new("service.instance.id", config.instance.clone()))
            .build();
        let mut builder = SdkTracerProvider::builder().with_resource(resource);
        let exporting = Self::export_configured();
        if exporting {
            let protocol = export_protocol(
                env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL")).as_deref(),
                env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT")).as_deref(),
            )?;
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(protocol)
                .build()
                .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
            builder = builder.with_span_processor(BatchSpanProcessor::builder(exporter, runtime::Tokio).build());
        }
        let provider = builder.build();

        let filter = config
            .filter
            .clone()
            .or_else(|| std::env::var(format!("{}_LOG", config.env_prefix)).ok())
            .or_else(|| std::env::var("RUST_LOG").ok())
            .unwrap_or_else(|| "info".to_owned());
        // The log filter governs the JSON lines only; spans (which carry the trace ids into
        // replies, events and logs) are kept at INFO and above whatever the log level.
        let filter = EnvFilter::try_new(format!("{filter},async_nats=warn,hyper=warn,warp=warn"))
            .map_err(|e| TelemetryError::Filter(e.to_string()))?;
        // The OTel layer sees spans and warnings/errors only (these mark the span as failed);
        // turning every debug event into a span event would cost more than it tells.
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(config.service.clone()))
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_location(false)
            .with_filter(filter_fn(|meta| *meta.level() <= if meta.is_span() { Level::INFO } else { Level::WARN }));
        let ship_level =
            match config.ship.clone().or_else(|| std::env::var(format!("{}_LOG_SHIP", config.env_prefix)).ok()) {
                Some(text) => parse_level(&text).map_err(TelemetryError::Filter)?,
                None => Some(Level::WARN),
            };
        let (tx, rx) = ship::queue();
        let dropped = Arc::new(AtomicU64::new(0));
        let shipper = ship_level.map(|level| {
            ShipLayer {
                tx,
                service: config.service.clone(),
                instance: config.instance.clone(),
                dropped: Arc::clone(&dropped),
            }
            // The NATS client's own warnings are not shipped: shipping them over a failing
            // connection would only feed itself.
            // Spans are enabled too (and ignored): a filtered layer sees only the spans its
            // filter enables, and the record names the service of the enclosing span.
            .with_filter(filter_fn(move |meta| {
                if meta.is_span() {
                    *meta.level() <= Level::INFO
                } else {
                    *meta.level() <= level && !meta.target().starts_with("async_nats")
                }
            }))
        });
        let readable = match std::env::var(format!("{}_LOG_FORMAT", config.env_prefix)).ok().as_deref() {
            Some("json") => false,
            Some("text") => true,
            Some(other) => {
                return Err(TelemetryError::Filter(format!(
                    "{}_LOG_FORMAT={other:?} is not a log format; use json or text",
                    config.env_prefix
                )));
            }
            None => std::io::IsTerminal::is_terminal(&std::io::stdout()),
        };
        let stdout = tracing_subscriber::fmt::layer()
            .event_format(JsonLines { service: config.service.clone(), instance: config.instance.clone(), readable })
            .with_writer(std::io::stdout)
            // INFO spans pass whatever the log level, so every line can name its service.
            .with_filter(filter.or(filter_fn(|meta| meta.is_span() && *meta.level() <= Level::INFO)));
        // Every layer is filtered, so callsites no layer wants (debug events of dependencies)
        // stay disabled and cost nothing.
        tracing_subscriber::registry()
            .with(ServiceFields.with_filter(filter_fn(|meta| meta.is_span() && *meta.level() <= Level::INFO)))
            .with(otel)
            .with(stdout)
            .with(shipper)
            .try_init()
            .map_err(|_| TelemetryError::AlreadyInitialised)?;
        let shipping = std::sync::Mutex::new(ship_level.map(|_| rx));
        Ok(Self { provider, exporting, shipping, dropped })
    }

    /// Starts shipping log records (those queued since [`Telemetry::init`] first) to
    /// `logs.<service>.<level>` over `client`. Does nothing when shipping is off or already
    /// started.
    pub fn ship_logs(&self, client: async_nats::Client, metrics: Option<Arc<crate::Metrics>>) {
        let rx = self.shipping.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(rx) = rx {
            tokio::spawn(ship::ship(client, rx, metrics, Arc::clone(&self.dropped)));
        }
    }

    /// Log records not shipped (queue full or publish failed).
    pub fn logs_dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// True when spans are exported.
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Flushes and stops span export.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_settings_this_build_cannot_honour_are_errors_naming_them() {
        assert_eq!(export_protocol(None, Some("http://collector:4318")).unwrap(), Protocol::HttpBinary);
        assert_eq!(export_protocol(Some("http/json"), None).unwrap(), Protocol::HttpJson);
        for (protocol, endpoint, needle) in [
            (Some("grpc"), Some("http://collector:4317"), "grpc"),
            (Some("thrift"), None, "thrift"),
            (None, Some("HTTPS://collector:4318"), "HTTPS://collector:4318"),
        ] {
            let err = export_protocol(protocol, endpoint).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
