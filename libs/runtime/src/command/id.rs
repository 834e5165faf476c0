//! The id check of an aggregate type, shared by its command service (ids from subjects) and the
//! registry (ids from HTTP paths and the command line).

use jetsource::{Aggregate, AggregateId};

/// An id that aggregate type `aggregate_type` refuses: `invalid <type> id: <why>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {aggregate_type} id: {reason}")]
pub struct InvalidId {
    /// The type whose id it is not.
    pub aggregate_type: &'static str,
    /// Why: the common alphabet's rule, or the type's own ([`Aggregate::check_id`]).
    pub reason: String,
}

impl From<InvalidId> for String {
    fn from(error: InvalidId) -> Self {
        error.to_string()
    }
}

/// The id check of aggregate type `A`: the common alphabet, then [`Aggregate::check_id`].
///
/// # Errors
/// [`InvalidId`].
pub fn aggregate_id<A: Aggregate>(raw: &str) -> Result<AggregateId, InvalidId> {
    let invalid = |reason: String| InvalidId { aggregate_type: A::TYPE, reason };
    let id = AggregateId::new(raw).map_err(|e| invalid(e.to_string()))?;
    A::check_id(&id).map_err(invalid)?;
    Ok(id)
}
