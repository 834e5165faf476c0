//! Log shipping: the same JSON records as stdout (WARN and above by default) published to
//! `logs.<service>.<level>`, which the `LOGS` stream keeps (bounded by age and bytes). Records
//! are queued without blocking the logging thread; a full queue drops records and counts them
//! rather than slowing the service down.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;
use tokio::sync::mpsc;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::json::{record, scope_service};

/// Records queued before the NATS connection exists or while it is slow.
const QUEUE: usize = 10_000;

/// One shipped record: its subject and JSON body.
pub(crate) struct Shipped {
    pub(crate) subject: String,
    pub(crate) level: &'static str,
    pub(crate) body: Vec<u8>,
}

/// The tracing layer that queues records for shipping.
pub(crate) struct ShipLayer {
    pub(crate) tx: mpsc::Sender<Shipped>,
    pub(crate) service: String,
    pub(crate) instance: String,
    pub(crate) dropped: Arc<AtomicU64>,
}

/// The queue's receiving end, until [`crate::Telemetry::ship_logs`] takes it.
pub(crate) fn queue() -> (mpsc::Sender<Shipped>, mpsc::Receiver<Shipped>) {
    mpsc::channel(QUEUE)
}

/// Parses a ship level: `trace`, `debug`, `info`, `warn`, `error`, or `off` (none).
pub(crate) fn parse_level(text: &str) -> Result<Option<Level>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "off" | "none" => Ok(None),
        "error" => Ok(Some(Level::ERROR)),
        "warn" | "warning" => Ok(Some(Level::WARN)),
        "info" => Ok(Some(Level::INFO)),
        "debug" => Ok(Some(Level::DEBUG)),
        "trace" => Ok(Some(Level::TRACE)),
        other => Err(format!("log ship level {other:?}: use off, error, warn, info, debug or trace")),
    }
}

/// A subject token from a service name (`[A-Za-z0-9_-]`, anything else becomes `_`).
fn token(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect()
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for ShipLayer {
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let record = record(event, scope_service(ctx.event_scope(event)), &self.service, &self.instance);
        let service = record.get("service").and_then(Value::as_str).map(token).unwrap_or_default();
        let level = level_name(*event.metadata().level());
        let Ok(body) = serde_json::to_vec(&record) else { return };
        let shipped = Shipped { subject: format!("logs.{service}.{level}"), level, body };
        if self.tx.try_send(shipped).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "error",
        Level::WARN => "warn",
        Level::INFO => "info",
        Level::DEBUG => "debug",
        Level::TRACE => "trace",
    }
}

/// Publishes queued records until the queue closes.
pub(crate) async fn ship(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Shipped>,
    metrics: Option<Arc<crate::Metrics>>,
    dropped: Arc<AtomicU64>,
) {
    while let Some(record) = rx.recv().await {
        if client.publish(record.subject, record.body.into()).await.is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if let Some(metrics) = &metrics {
            metrics.logs_shipped.get_or_create(&[("level", record.level.into())]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_and_tokens() {
        assert_eq!(parse_level("WARN").unwrap(), Some(Level::WARN));
        assert_eq!(parse_level("off").unwrap(), None);
        assert!(parse_level("loud").is_err());
        assert_eq!(token("stock+catalog"), "stock_catalog");
    }
}
