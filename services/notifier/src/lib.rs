//! # factory-notifier
//!
//! Tells clients about asynchronous outcomes (`docs/contracts/nats.md`, notifications). A durable consumer
//! (`notifier`) reads order events and the facts of views that parked events; each one that
//! moves a command's status on ([`factory_domain::status`]) becomes a notification published to
//! `notify.<command_id>` in the stream `NOTIFICATIONS` (kept 24 h):
//!
//! ```json
//! {"command_id":"…","correlation_id":"…","status":"failed","service":"stock","code":"rejected",
//!  "reason":"insufficient_stock","message":"bolt@main: insufficient stock: 8 requested, 2 available",
//!  "trace_id":"…","at":"2026-11-27T10:00:00Z"}
//! ```
//!
//! The notification carries the trace of the event (its span is a child of the event's
//! trace), and its `Nats-Msg-Id` is derived from the event, so a redelivered event notifies
//! once. The HTTP edge streams these as Server-Sent Events.
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = jetsource_testkit::NatsServer::start();
//! # let client = jetsource::connect(&server.url(), "example").await?;
//! # let topology = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../nats/topology.toml"));
//! # let topology = jetsource::topology::Topology::parse(topology)?;
//! # jetsource::topology::provision(&async_nats::jetstream::new(client.clone()), &topology, Default::default()).await?;
//! use std::sync::Arc;
//! let metrics = Arc::new(jetsource_telemetry::Metrics::new("example"));
//! let notifier = factory_notifier::Notifier::start(client, metrics).await?;
//! let shutdown = jetsource_runtime::Shutdown::new();
//! let running = tokio::spawn(notifier.run_until_stopped(shutdown.clone()));
//! shutdown.trigger();
//! running.await?;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::message::PublishMessage;
use async_nats::{Client, HeaderMap};
use factory_domain::order::OrderEvent;
use factory_domain::status;
use futures::future::BoxFuture;
use jetsource::consume::{self, EventHandler, Outcome, PerEventConfig};
use jetsource::projection::EventParked;
use jetsource::{Codec, StoredEvent};
use jetsource_runtime::Shutdown;
use jetsource_runtime::micro::MicroService;
use jetsource_telemetry::Metrics;
use jetsource_telemetry::propagation;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

/// The prefix of notification subjects: `notify.<command_id>`.
pub const SUBJECT_PREFIX: &str = "notify";

/// One notification (`docs/contracts/nats.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The command whose status changed.
    pub command_id: String,
    /// Its conversation (the same id: the command began it).
    pub correlation_id: String,
    /// `completed` or `failed`.
    pub status: String,
    /// Who reported what, in which trace, when.
    #[serde(flatten)]
    pub report: status::Report,
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
#[error("notifier: {0}; is the topology provisioned (`factory provision`)?")]
pub struct NotifierError(String);

/// The running notifier.
pub struct Notifier {
    client: Client,
    consumer: PullConsumer,
    parked: async_nats::jetstream::kv::Store,
    metrics: Arc<Metrics>,
    _micro: MicroService,
}

impl Notifier {
    /// Binds the `notifier` consumer and answers `$SRV` discovery.
    ///
    /// # Errors
    /// [`NotifierError`] when the consumer is missing or JetStream does not answer.
    pub async fn start(client: Client, metrics: Arc<Metrics>) -> Result<Self, NotifierError> {
        let js = jetstream::new(client.clone());
        let consumer: PullConsumer = js
            .get_consumer_from_stream("notifier", "EVENTS")
            .await
            .map_err(|e| NotifierError(format!("consumer notifier on EVENTS: {e}")))?;
        let micro = MicroService::start(
            &client,
            "notifier",
            env!("CARGO_PKG_VERSION"),
            "Asynchronous outcomes of commands to notify.<command_id>",
        )
        .await
        .map_err(|e| NotifierError(e.to_string()))?;
        let parked = js.get_key_value("parked").await.map_err(|e| NotifierError(format!("bucket parked: {e}")))?;
        tracing::info!(service = "notifier", service_id = micro.id(), "notifier ready");
        Ok(Self { client, consumer, parked, metrics, _micro: micro })
    }

    /// Notifies until `shutdown`, in the one consumer loop: a notification that cannot be
    /// published is retried with backoff.
    pub async fn run_until_stopped(self, shutdown: Shutdown) {
        let work = Arc::new(Work {
            js: jetstream::new(self.client.clone()),
            orders: Codec::default(),
            metrics: Arc::clone(&self.metrics),
        });
        let config = PerEventConfig::new("notifier");
        consume::run_per_event(self.consumer, self.parked, config, work, shutdown).await;
    }
}

struct Work {
    js: jetstream::Context,
    orders: Codec<OrderEvent>,
    metrics: Arc<Metrics>,
}

impl EventHandler for Work {
    fn handle<'a>(&'a self, event: &'a StoredEvent) -> BoxFuture<'a, Outcome> {
        Box::pin(async move {
            match self.notify(event).await {
                Ok(()) => Outcome::Done,
                Err(e) => {
                    tracing::warn!(service = "notifier", subject = %event.subject, error = %e, "cannot notify; will retry");
                    Outcome::Retry(Duration::from_millis(500))
                }
            }
        })
    }
}

impl Work {
    /// Publishes the notification an event calls for, if any.
    async fn notify(&self, stored: &StoredEvent) -> Result<(), String> {
        let Some((notification, event_id, trace)) = self.read(stored) else { return Ok(()) };
        let span = tracing::info_span!(
            "notifier.notify",
            service = "notifier",
            otel.name = %format!("notify {}", notification.status),
            command_id = %notification.command_id,
            status = %notification.status,
            code = %notification.report.code,
            stream_seq = stored.seq,
        );
        propagation::set_parent_from_trace(&span, &trace);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("notify-{event_id}").as_str());
        propagation::inject(&span, &mut headers);
        let body = serde_json::to_vec(&notification).map_err(|e| e.to_string())?;
        let subject = format!("{SUBJECT_PREFIX}.{}", notification.command_id);
        let publish = PublishMessage::build().payload(body.into()).headers(headers);
        async {
            let ack = self.js.send_publish(subject, publish).await.map_err(|e| e.to_string())?;
            ack.await.map_err(|e| e.to_string())?;
            if notification.status == "failed" {
                tracing::warn!(
                    command_id = %notification.command_id,
                    failed_in = %notification.report.service,
                    code = %notification.report.code,
                    detail = %notification.report.message,
                    "command failed asynchronously"
                );
            }
            Ok::<_, String>(())
        }
        .instrument(span)
        .await?;
        self.metrics.notifications.get_or_create(&[("status", notification.status.clone().into())]).inc();
        Ok(())
    }

    /// The notification of an event, with the event's id and trace; `None` when the event
    /// changes no command's status (or cannot be read: nothing to tell then).
    fn read(&self, stored: &StoredEvent) -> Option<(Notification, String, jetsource::TraceContext)> {
        let attributes = stored.attributes().ok()?;
        let correlation = attributes.metadata.correlation_id.clone();
        if correlation.is_empty() {
            return None;
        }
        let outcome: status::Outcome = if stored.subject.starts_with(&format!("evt.{}.", EventParked::AGGREGATE_TYPE)) {
            {
                let p: EventParked = serde_json::from_slice(&stored.data).ok()?;
                let by = status::source_service(&attributes.source);
                status::of_parked(by, &p.view, &p.event_type, p.seq, &p.subject, &p.reason)
            }
        } else {
            let (_, event) = self.orders.decode(stored).ok()?;
            status::of_order_event(&event, status::source_service(&attributes.source))?
        };
        let trace = attributes.metadata.trace.clone();
        let notification = Notification {
            command_id: correlation.clone(),
            correlation_id: correlation,
            status: outcome.status.to_owned(),
            report: outcome.report(trace.trace_id().map(str::to_owned), attributes.time),
        };
        Some((notification, attributes.id, trace))
    }
}
