//! Setting up tracing once per process: JSON logs to stdout, OpenTelemetry spans with W3C
//! propagation, and OTLP export of spans (and, if asked, logs) when the standard
//! `OTEL_EXPORTER_OTLP_*` variables ask for it (see [`crate::otlp`]).

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::logs::log_processor_with_async_runtime::BatchLogProcessor;
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
use crate::otlp::{self, Signal};
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
    loggers: Option<SdkLoggerProvider>,
    exporting: bool,
    shipping: std::sync::Mutex<Option<mpsc::Receiver<Shipped>>>,
    dropped: Arc<AtomicU64>,
}

impl Telemetry {
    /// True when the environment asks for spans to be exported over OTLP (an
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or
    /// `OTEL_TRACES_EXPORTER=otlp`; `OTEL_TRACES_EXPORTER=none` turns it off).
    pub fn export_configured() -> bool {
        otlp::plan(&otlp::process_env, Signal::Traces).is_ok_and(|plan| plan.is_some())
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
        let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
        otlp::check_others(&otlp::process_env)?;
        let traces = otlp::plan(&otlp::process_env, Signal::Traces)?;
        let exporting = traces.is_some();
        if let Some(export) = traces {
            let exporter = export.spans()?;
            builder = builder.with_span_processor(BatchSpanProcessor::builder(exporter, runtime::Tokio).build());
        }
        let provider = builder.build();
        let loggers = match otlp::plan(&otlp::process_env, Signal::Logs)? {
            None => None,
            Some(export) => {
                let exporter = export.logs()?;
                Some(
                    SdkLoggerProvider::builder()
                        .with_resource(resource)
                        .with_log_processor(BatchLogProcessor::builder(exporter, runtime::Tokio).build())
                        .build(),
                )
            }
        };

        let filter = config
            .filter
            .clone()
            .or_else(|| std::env::var(format!("{}_LOG", config.env_prefix)).ok())
            .or_else(|| std::env::var("RUST_LOG").ok())
            .unwrap_or_else(|| "info".to_owned());
        // The log filter governs the JSON lines only; spans (which carry the trace ids into
        // replies, events and logs) are kept at INFO and above whatever the log level.
        let directives = format!("{filter},async_nats=warn,hyper=warn,warp=warn");
        let filter = EnvFilter::try_new(&directives).map_err(|e| TelemetryError::Filter(e.to_string()))?;
        // Log records over OTLP: what the log filter lets through, but never the exporter's own
        // machinery (its records would feed themselves).
        let otlp_logs = match &loggers {
            None => None,
            Some(loggers) => {
                let filter = EnvFilter::try_new(format!(
                    "{directives},opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,tonic=off,h2=off,tower=off,hyper_util=off,rustls=off"
                ))
                .map_err(|e| TelemetryError::Filter(e.to_string()))?;
                Some(
                    opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(loggers).with_filter(filter),
                )
            }
        };
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
            .with(otlp_logs)
            .try_init()
            .map_err(|_| TelemetryError::AlreadyInitialised)?;
        let shipping = std::sync::Mutex::new(ship_level.map(|_| rx));
        Ok(Self { provider, loggers, exporting, shipping, dropped })
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

    /// Flushes and stops span (and log) export.
    pub async fn shutdown(self) {
        let (provider, loggers) = (self.provider, self.loggers);
        let _ = tokio::task::spawn_blocking(move || {
            let _ = provider.shutdown();
            if let Some(loggers) = loggers {
                let _ = loggers.shutdown();
            }
        })
        .await;
    }
}
