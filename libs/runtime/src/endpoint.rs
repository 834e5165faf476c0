//! One request/reply endpoint loop for every service: take requests from a subscription, run
//! the handler for each (a bounded number at once), send its answer with the error contract,
//! record the endpoint's `$SRV.STATS`, and stop on the signal. Handlers return an [`Answer`];
//! they never publish themselves.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_nats::{Client, HeaderMap, Message, Subscriber};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::Shutdown;
use crate::micro::Endpoint;
use crate::wire::ErrorBody;

/// What to send back for one request.
#[derive(Debug, Clone)]
pub struct Answer {
    headers: HeaderMap,
    body: Bytes,
    error: Option<(u16, String)>,
}

impl Answer {
    /// A success with a body already encoded.
    pub fn ok(body: impl Into<Bytes>) -> Self {
        Self { headers: HeaderMap::new(), body: body.into(), error: None }
    }

    /// A success with a JSON body.
    pub fn json(value: &impl Serialize) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Self::ok(body),
            Err(e) => Self::error(&ErrorBody::new(jetsource::ErrorCode::Internal, format!("unencodable reply: {e}"))),
        }
    }

    /// An error reply (`Nats-Service-Error-Code`, `Nats-Service-Error`, JSON body).
    pub fn error(error: &ErrorBody) -> Self {
        let (headers, body) = error.to_message();
        Self { headers, body, error: Some((error.status(), error.message.clone())) }
    }

    /// The answer of a handler's result.
    pub fn of<T: Serialize>(result: Result<T, ErrorBody>) -> Self {
        match result {
            Ok(value) => Self::json(&value),
            Err(error) => Self::error(&error),
        }
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// True for an error reply.
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }
}

/// How many requests one endpoint handles at once, at most.
pub const DEFAULT_IN_FLIGHT: usize = 1024;

/// Answers the requests of `requests` with `handler` until `shutdown` (or until the
/// subscription ends), at most `max_in_flight` at once; the answers of requests under way are
/// still sent.
pub async fn serve<H, F>(
    client: Client,
    mut requests: Subscriber,
    stats: Arc<Endpoint>,
    max_in_flight: usize,
    shutdown: Shutdown,
    handler: H,
) where
    H: Fn(Message) -> F + Send + Sync + 'static,
    F: Future<Output = Answer> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(max_in_flight.max(1)));
    let handler = Arc::new(handler);
    loop {
        let message = tokio::select! {
            () = shutdown.wait() => break,
            next = requests.next() => match next {
                Some(message) => message,
                None => break,
            },
        };
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
        let (client, stats, handler) = (client.clone(), Arc::clone(&stats), Arc::clone(&handler));
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = message.reply.clone();
            let answer = handler(message).await;
            stats.record(started.elapsed(), answer.error.as_ref().map(|(code, text)| (*code, text.as_str())));
            if let Some(reply) = reply {
                let sent = if answer.headers.is_empty() {
                    client.publish(reply, answer.body).await
                } else {
                    client.publish_with_headers(reply, answer.headers, answer.body).await
                };
                if let Err(e) = sent {
                    tracing::warn!(error = %e, "cannot send a reply");
                }
            }
            drop(permit);
        });
    }
}
