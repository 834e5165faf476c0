//! One typed client of the wire contract: a request with a deadline becomes a typed reply or a
//! typed error, never a hang.

use std::time::Duration;

use async_nats::{HeaderMap, Message, RequestErrorKind};
use bytes::Bytes;
use jetsource::{ErrorCode, EventRef};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::reply::{ErrorBody, read_reply};
use super::{header, subject};

/// The success reply of a command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandReply {
    /// The command id.
    pub command_id: String,
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub aggregate_id: String,
    /// Dense version after the command.
    pub version: u64,
    /// Stream sequence of its last event: the consistency token.
    pub stream_seq: u64,
    /// `succeeded`, or `accepted` for an asynchronous command.
    pub status: String,
    /// The events recorded.
    pub events: Vec<EventRef>,
}

/// A command to send.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandRequest {
    /// Aggregate type.
    pub aggregate_type: String,
    /// Aggregate id.
    pub id: String,
    /// Command name.
    pub command: String,
    /// JSON body.
    pub body: Bytes,
    /// `Idempotency-Key`.
    pub idempotency_key: Option<String>,
    /// `Expected-Version`.
    pub expected_version: Option<u64>,
    /// `Actor`.
    pub actor: Option<String>,
    /// `Correlation-Id`.
    pub correlation_id: Option<String>,
    /// `Causation-Id`.
    pub causation_id: Option<String>,
    /// More headers (trace context).
    pub headers: HeaderMap,
}

impl CommandRequest {
    /// Command `command` of aggregate `id` of type `aggregate_type` with `body`.
    pub fn new(aggregate_type: &str, id: &str, command: &str, body: impl Into<Bytes>) -> Self {
        Self {
            aggregate_type: aggregate_type.to_owned(),
            id: id.to_owned(),
            command: command.to_owned(),
            body: body.into(),
            ..Self::default()
        }
    }

    /// Its subject.
    pub fn subject(&self) -> String {
        subject::command(&self.aggregate_type, &self.id, &self.command)
    }

    /// Its headers.
    pub fn header_map(&self) -> HeaderMap {
        let mut headers = self.headers.clone();
        let pairs = [
            (header::IDEMPOTENCY_KEY, self.idempotency_key.clone()),
            (header::EXPECTED_VERSION, self.expected_version.map(|v| v.to_string())),
            (header::ACTOR, self.actor.clone()),
            (header::CORRELATION_ID, self.correlation_id.clone()),
            (header::CAUSATION_ID, self.causation_id.clone()),
        ];
        for (name, value) in pairs {
            if let Some(value) = value {
                headers.insert(name, value.as_str());
            }
        }
        headers
    }
}

/// Why a call did not get a success reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CallError {
    /// The service answered with an error.
    #[error("{0}")]
    Reply(ErrorBody),
    /// Nothing subscribes to the subject.
    #[error("nothing answers {subject}")]
    NoResponders {
        /// The subject.
        subject: String,
    },
    /// No answer within the deadline.
    #[error("no reply to {subject} within {after:?}")]
    Timeout {
        /// The subject.
        subject: String,
        /// The deadline.
        after: Duration,
    },
    /// The request cannot be sent as it is (invalid subject, payload too large).
    #[error("cannot send: {0}")]
    Invalid(String),
    /// NATS itself failed (connection closed).
    #[error("NATS: {0}")]
    Nats(String),
}

impl CallError {
    /// The contract's error code of this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Reply(body) => body.code,
            Self::Invalid(_) => ErrorCode::Invalid,
            Self::NoResponders { .. } | Self::Nats(_) => ErrorCode::Unavailable,
            Self::Timeout { .. } => ErrorCode::Timeout,
        }
    }
}

/// The typed client: NATS requests with a deadline, replies read by the contract.
#[derive(Debug, Clone)]
pub struct Client {
    nats: async_nats::Client,
    deadline: Duration,
}

impl Client {
    /// A client over `nats` whose requests wait at most `deadline`.
    pub fn new(nats: async_nats::Client, deadline: Duration) -> Self {
        Self { nats, deadline }
    }

    /// The NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// Sends a request and returns the reply message when it is a success.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn request(&self, subject: String, headers: HeaderMap, body: Bytes) -> Result<Message, CallError> {
        let request = self.nats.request_with_headers(subject.clone(), headers, body);
        let reply = match tokio::time::timeout(self.deadline, request).await {
            Err(_) => return Err(CallError::Timeout { subject, after: self.deadline }),
            Ok(Err(e)) => {
                return Err(match e.kind() {
                    RequestErrorKind::NoResponders => CallError::NoResponders { subject },
                    RequestErrorKind::TimedOut => CallError::Timeout { subject, after: self.deadline },
                    RequestErrorKind::InvalidSubject | RequestErrorKind::MaxPayloadExceeded => {
                        CallError::Invalid(e.to_string())
                    }
                    RequestErrorKind::Other => CallError::Nats(e.to_string()),
                });
            }
            Ok(Ok(reply)) => reply,
        };
        match read_reply(&reply) {
            Ok(_) => Ok(reply),
            Err(body) => Err(CallError::Reply(body)),
        }
    }

    /// Sends a command; its reply, typed.
    ///
    /// # Errors
    /// [`CallError`]; an unreadable success reply is [`CallError::Reply`] with code `internal`.
    pub async fn command(&self, command: &CommandRequest) -> Result<CommandReply, CallError> {
        let reply = self.request(command.subject(), command.header_map(), command.body.clone()).await?;
        serde_json::from_slice(&reply.payload).map_err(|e| {
            CallError::Reply(ErrorBody::new(ErrorCode::Internal, format!("unreadable command reply: {e}")))
        })
    }

    /// Reads `key` of `view` (or a listing page with `listing` as its JSON body), waiting for
    /// `min_seq` if given.
    ///
    /// # Errors
    /// [`CallError`].
    pub async fn query(
        &self,
        view: &str,
        key: Option<&str>,
        listing: Option<&Value>,
        min_seq: Option<u64>,
    ) -> Result<Value, CallError> {
        let mut headers = HeaderMap::new();
        if let Some(seq) = min_seq {
            headers.insert(header::MIN_SEQ, seq.to_string());
        }
        let body = listing.map(|l| Bytes::from(l.to_string())).unwrap_or_default();
        let reply = self.request(subject::query(view, key), headers, body).await?;
        Ok(serde_json::from_slice(&reply.payload).unwrap_or(Value::Null))
    }
}
