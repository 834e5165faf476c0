//! The talk's logging problem, answered over the bus: every service ships its log records
//! (WARN and above by default) to `logs.<service>.<level>` in the stream `LOGS`; the logbook
//! answers `logbook.query` with the records that match a service, a lowest level and a trace
//! id, newest last. The CLI's `logs` and `GET /v1/logs` ask it.
//!
//! Query (JSON body, every field optional):
//! `{"service": "stock", "level": "warn", "trace_id": "4bf9…", "limit": 100}` →
//! `{"records": [ {"timestamp", "level", "service", "instance", "target", "message",
//! "trace_id", "span_id", …}, … ], "scanned": 1234}`.
//!
//! Service and level filter on the server (subjects); the trace id is matched here, over at
//! most the last [`SCAN_LIMIT`] records of the selected subjects.
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let server = jetsource_testkit::NatsServer::start();
//! # let client = jetsource::connect(&server.url(), "example").await?;
//! # let js = async_nats::jetstream::new(client.clone());
//! # js.create_stream(async_nats::jetstream::stream::Config { name: "LOGS".into(), subjects: vec!["logs.>".into()], ..Default::default() }).await?;
//! let logbook = jetsource_runtime::logbook::Logbook::start(client).await?;
//! let shutdown = jetsource_runtime::Shutdown::new();
//! let running = tokio::spawn(logbook.run_until_stopped(shutdown.clone()));
//! shutdown.trigger();
//! running.await?;
//! # Ok(()) }
//! ```

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::Shutdown;
use crate::endpoint::{self, Answer};
use crate::micro::{Endpoint, MicroService};
use crate::wire::ErrorBody;
use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::{Client, Subscriber};
use futures::StreamExt;
use jetsource::ErrorCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The request subject.
pub const QUERY_SUBJECT: &str = crate::wire::subject::LOGBOOK_QUERY;
/// Records read at most per query (from the newest back).
pub const SCAN_LIMIT: u64 = 200_000;
/// Largest page.
pub const MAX_LIMIT: usize = 1000;
/// Levels, lowest first.
pub const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// A log query; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Only this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Only this level and above (`warn` → `warn` and `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Only records of this trace (32 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// At most this many records, the newest (default 100, at most 1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Which field of a [`LogQuery`] is malformed, and how.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogQueryError {
    /// Not a service name.
    #[error("service {0:?}: use letters, digits, _ and - (at most 64)")]
    Service(String),
    /// Not a level.
    #[error("level {0:?}: use one of {levels}", levels = LEVELS.join(", "))]
    Level(String),
    /// Not a W3C trace id.
    #[error("trace_id {0:?}: 32 hex digits")]
    TraceId(String),
    /// Outside 1 to the largest page.
    #[error("limit {0}: 1 to {MAX_LIMIT}")]
    Limit(usize),
}

impl LogQuery {
    /// The subjects this query reads.
    ///
    /// # Errors
    /// [`LogQueryError`] naming a malformed field.
    pub fn subjects(&self) -> Result<Vec<String>, LogQueryError> {
        let service = match &self.service {
            None => "*".to_owned(),
            Some(s)
                if !s.is_empty()
                    && s.len() <= 64
                    && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                s.clone()
            }
            Some(s) => return Err(LogQueryError::Service(s.clone())),
        };
        let levels: Vec<&str> = match &self.level {
            None => vec!["*"],
            Some(level) => {
                let level = level.to_ascii_lowercase();
                let Some(from) = LEVELS.iter().position(|l| *l == level) else {
                    return Err(LogQueryError::Level(level));
                };
                LEVELS[from..].to_vec()
            }
        };
        Ok(levels.into_iter().map(|level| format!("logs.{service}.{level}")).collect())
    }

    /// Checks the fields.
    ///
    /// # Errors
    /// [`LogQueryError`] naming the malformed field.
    pub fn validate(&self) -> Result<(), LogQueryError> {
        self.subjects()?;
        if let Some(trace) = &self.trace_id
            && !(trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(LogQueryError::TraceId(trace.clone()));
        }
        if let Some(limit) = self.limit
            && !(1..=MAX_LIMIT).contains(&limit)
        {
            return Err(LogQueryError::Limit(limit));
        }
        Ok(())
    }
}

/// The answer to a [`LogQuery`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LogPage {
    /// Matching records, oldest first (the newest `limit`).
    pub records: Vec<Value>,
    /// Records read to find them.
    pub scanned: u64,
    /// The scan stopped at its time bound before the newest record: narrow the query (service,
    /// level) to see the latest.
    #[serde(default)]
    pub truncated: bool,
}

/// Why the logbook could not start.
#[derive(Debug, thiserror::Error)]
#[error("logbook: {0}")]
pub struct LogbookError(String);

/// The running logbook.
pub struct Logbook {
    inner: Arc<Inner>,
    requests: Subscriber,
    _micro: MicroService,
}

struct Inner {
    client: Client,
    js: jetstream::Context,
    endpoint: Arc<Endpoint>,
}

impl Logbook {
    /// Answers `$SRV` discovery and subscribes `logbook.query` in queue group `logbook`.
    ///
    /// # Errors
    /// [`LogbookError`] when the subscriptions cannot be made.
    pub async fn start(client: Client) -> Result<Self, LogbookError> {
        let micro = MicroService::start(
            &client,
            "logbook",
            env!("CARGO_PKG_VERSION"),
            "Queries over the shipped logs: logbook.query {service, level, trace_id, limit}",
        )
        .await
        .map_err(|e| LogbookError(e.to_string()))?;
        let (requests, endpoint) =
            micro.endpoint("query", QUERY_SUBJECT, "logbook").await.map_err(|e| LogbookError(e.to_string()))?;
        tracing::info!(service = "logbook", service_id = micro.id(), "logbook ready");
        let inner = Arc::new(Inner { js: jetstream::new(client.clone()), client, endpoint });
        Ok(Self { inner, requests, _micro: micro })
    }

    /// Answers until `shutdown`.
    pub async fn run_until_stopped(self, shutdown: Shutdown) {
        let Logbook { inner, requests, _micro } = self;
        let (client, stats) = (inner.client.clone(), Arc::clone(&inner.endpoint));
        endpoint::serve(client, requests, stats, endpoint::DEFAULT_IN_FLIGHT, shutdown, move |request| {
            let inner = Arc::clone(&inner);
            async move { Answer::of(inner.query(&request.payload).await) }
        })
        .await;
        tracing::info!(service = "logbook", "stopping");
    }
}

impl Inner {
    async fn query(&self, body: &[u8]) -> Result<LogPage, ErrorBody> {
        let query: LogQuery = if body.iter().all(u8::is_ascii_whitespace) {
            LogQuery::default()
        } else {
            serde_json::from_slice(body).map_err(|e| ErrorBody::new(ErrorCode::Invalid, format!("log query: {e}")))?
        };
        query.validate().map_err(|e| ErrorBody::new(ErrorCode::Invalid, e.to_string()))?;
        let limit = query.limit.unwrap_or(100);
        let unavailable = |e: &dyn std::fmt::Display| ErrorBody::new(ErrorCode::Unavailable, format!("LOGS: {e}"));
        let mut stream = self.js.get_stream("LOGS").await.map_err(|e| unavailable(&e))?;
        let state = stream.info().await.map_err(|e| unavailable(&e))?.state.clone();
        if state.messages == 0 {
            return Ok(LogPage::default());
        }
        let subjects = query.subjects().map_err(|e| ErrorBody::new(ErrorCode::Invalid, e.to_string()))?;
        let start = state.last_sequence.saturating_sub(SCAN_LIMIT).max(state.first_sequence).max(1);
        let mut consumer = stream
            .create_consumer(OrderedConfig {
                filter_subjects: subjects,
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
                ..Default::default()
            })
            .await
            .map_err(|e| unavailable(&e))?;
        if consumer.info().await.map_err(|e| unavailable(&e))?.num_pending == 0 {
            return Ok(LogPage::default()); // nothing matches the subjects
        }
        let mut messages = consumer.messages().await.map_err(|e| unavailable(&e))?;
        let mut records = VecDeque::with_capacity(limit);
        let mut scanned = 0;
        let mut truncated = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let next = tokio::time::timeout_at(deadline, messages.next()).await;
            let Ok(Some(Ok(message))) = next else {
                truncated = true;
                break;
            };
            scanned += 1;
            let pending = message.info().map(|i| i.pending).unwrap_or(0);
            let seq = message.info().map(|i| i.stream_sequence).unwrap_or(u64::MAX);
            if let Ok(record) = serde_json::from_slice::<Value>(&message.payload) {
                let matches = query.trace_id.as_ref().is_none_or(|t| record["trace_id"].as_str() == Some(t.as_str()));
                if matches {
                    if records.len() == limit {
                        records.pop_front();
                    }
                    records.push_back(record);
                }
            }
            if pending == 0 || seq >= state.last_sequence {
                break;
            }
        }
        // The ordered consumer is ephemeral: the server removes it once it is idle.
        Ok(LogPage { records: records.into(), scanned, truncated })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_select_subjects_and_refuse_bad_fields() {
        let q = LogQuery { service: Some("stock".into()), level: Some("warn".into()), ..Default::default() };
        assert_eq!(q.subjects().unwrap(), ["logs.stock.warn", "logs.stock.error"]);
        assert_eq!(LogQuery::default().subjects().unwrap(), ["logs.*.*"]);
        assert!(LogQuery { service: Some("a.b".into()), ..Default::default() }.validate().is_err());
        assert!(LogQuery { level: Some("loud".into()), ..Default::default() }.validate().is_err());
        assert!(LogQuery { trace_id: Some("xyz".into()), ..Default::default() }.validate().is_err());
        assert!(LogQuery { limit: Some(0), ..Default::default() }.validate().is_err());
    }
}
