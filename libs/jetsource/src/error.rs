//! Errors by who must act: the caller (invalid, rejected, stale), a retry (conflict,
//! unavailable), or an operator (internal, undecodable history).

use thiserror::Error;

use crate::aggregate::DomainError;
use crate::id::IdError;

/// The stable error codes of the public contract (`docs/contracts/nats.md`), with their HTTP-like status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: malformed request, bad id, unknown field.
    Invalid,
    /// 404: no such aggregate, view key, command or route.
    NotFound,
    /// 422: the domain refused (with a `reason`).
    Rejected,
    /// 409: optimistic concurrency kept failing after bounded retries.
    Conflict,
    /// 412: the pinned expected version is stale.
    PreconditionFailed,
    /// 422: an idempotency key reused with a different request.
    IdempotencyKeyReused,
    /// 503: NATS, JetStream or the service is not there.
    Unavailable,
    /// 504: no answer in time.
    Timeout,
    /// 504: a read-your-writes query waited too long for the view.
    ConsistencyTimeout,
    /// 500: a fault of ours; details are in the log, not in the answer.
    Internal,
}

impl ErrorCode {
    /// The code as written on the wire (`precondition_failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::NotFound => "not_found",
            Self::Rejected => "rejected",
            Self::Conflict => "conflict",
            Self::PreconditionFailed => "precondition_failed",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::ConsistencyTimeout => "consistency_timeout",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status (also the `Nats-Service-Error-Code`).
    pub fn status(self) -> u16 {
        match self {
            Self::Invalid => 400,
            Self::NotFound => 404,
            Self::Rejected | Self::IdempotencyKeyReused => 422,
            Self::Conflict => 409,
            Self::PreconditionFailed => 412,
            Self::Unavailable => 503,
            Self::Timeout | Self::ConsistencyTimeout => 504,
            Self::Internal => 500,
        }
    }

    /// Parses a wire code.
    pub fn parse(code: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(code.to_owned())).ok()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failures of the event store (append, read, snapshots).
#[derive(Debug, Error)]
pub enum StoreError {
    /// The aggregate changed since it was loaded: `Nats-Expected-Last-Subject-Sequence` did not
    /// hold (JetStream 10071). Retry after reloading.
    #[error("{subject} moved past the expected sequence {expected}")]
    Conflict {
        /// The aggregate subject.
        subject: String,
        /// The sequence the append expected.
        expected: u64,
    },
    /// The message ids are already stored (a batch: JetStream 10201) or being stored by a
    /// concurrent publish (a cluster: 10158): the command was, or is being, recorded. Reload to
    /// find its outcome.
    #[error("{subject}: the events' message ids are already stored or in flight")]
    Duplicate {
        /// The aggregate subject.
        subject: String,
    },
    /// A stored event names a type this reader does not know.
    #[error("unknown event type {event_type:?} at {subject} seq {seq}")]
    UnknownEventType {
        /// Subject of the event.
        subject: String,
        /// Stream sequence of the event.
        seq: u64,
        /// The `ce-type` found.
        event_type: String,
    },
    /// A stored event could not be decoded or upcast.
    #[error("cannot decode the event at {subject} seq {seq}: {reason}")]
    Undecodable {
        /// Subject of the event.
        subject: String,
        /// Stream sequence of the event.
        seq: u64,
        /// What went wrong.
        reason: String,
    },
    /// NATS or JetStream did not answer, or the stream is missing.
    #[error("event store unavailable: {0}")]
    Unavailable(String),
    /// The events are too large for one message or one batch.
    #[error("{0}")]
    TooLarge(String),
    /// Anything else; a bug or a misconfiguration.
    #[error("event store failure: {0}")]
    Internal(String),
}

/// Why a command did not produce its events.
#[derive(Debug, Error)]
pub enum CommandError<E: DomainError> {
    /// The request itself is wrong. HTTP 400, NATS `invalid`.
    #[error("invalid command: {0}")]
    Invalid(String),
    /// The aggregate refused. HTTP 422 `rejected` with the domain `reason`, or 404 `not_found`
    /// when [`DomainError::is_not_found`].
    #[error("{0}")]
    Rejected(E),
    /// Optimistic concurrency failed on every attempt. HTTP 409, NATS `conflict`: retry later.
    #[error("conflict: the aggregate kept changing; gave up after {attempts} attempts")]
    Conflict {
        /// How many times the command was tried.
        attempts: u32,
    },
    /// The caller's pinned version is not the current one. HTTP 412 `precondition_failed`.
    #[error("expected version {expected}, but the aggregate is at version {actual}")]
    PreconditionFailed {
        /// Version the caller pinned.
        expected: u64,
        /// Current version.
        actual: u64,
    },
    /// NATS or JetStream is not answering. HTTP 503 `unavailable`.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A fault of ours (undecodable history, bug). HTTP 500 `internal`; the detail is logged.
    #[error("internal error: {0}")]
    Internal(String),
}

impl<E: DomainError> CommandError<E> {
    /// The wire code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid(_) => ErrorCode::Invalid,
            Self::Rejected(e) if e.is_not_found() => ErrorCode::NotFound,
            Self::Rejected(_) => ErrorCode::Rejected,
            Self::Conflict { .. } => ErrorCode::Conflict,
            Self::PreconditionFailed { .. } => ErrorCode::PreconditionFailed,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// The domain reason of a rejection.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::Rejected(e) => Some(e.reason()),
            _ => None,
        }
    }
}

impl<E: DomainError> From<IdError> for CommandError<E> {
    fn from(e: IdError) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl<E: DomainError> From<StoreError> for CommandError<E> {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => Self::Unavailable(m),
            StoreError::TooLarge(m) => Self::Invalid(m),
            // Conflicts and duplicates are handled by the retry loop; reaching here is a bug.
            other => Self::Internal(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_carry_their_status() {
        for code in [
            ErrorCode::Invalid,
            ErrorCode::NotFound,
            ErrorCode::Rejected,
            ErrorCode::Conflict,
            ErrorCode::PreconditionFailed,
            ErrorCode::IdempotencyKeyReused,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::ConsistencyTimeout,
            ErrorCode::Internal,
        ] {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
            assert!((400..600).contains(&code.status()));
        }
        assert_eq!(ErrorCode::PreconditionFailed.status(), 412);
        assert_eq!(ErrorCode::parse("nope"), None);
    }
}
