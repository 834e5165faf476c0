//! Parked events: what a view could not apply, per aggregate, in the `parked` KV bucket, so a
//! restart keeps them parked and an operator can see and retry them.

use serde::{Deserialize, Serialize};

/// The parked events of one aggregate in one view version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedRecord {
    /// The view.
    pub view: String,
    /// The view version.
    pub version: u32,
    /// The aggregate's subject.
    pub subject: String,
    /// Stream sequences waiting, oldest first; the first is the one that failed.
    pub seqs: Vec<u64>,
    /// Why the first could not be applied.
    pub reason: String,
    /// The command that recorded the first.
    pub command_id: String,
    /// When it was parked (RFC 3339).
    pub at: String,
}

/// The key of a parked record: `<view>.v<version>.<subject token, KV-escaped>`.
pub(crate) fn key(view: &str, version: u32, subject: &str) -> String {
    format!("{view}.v{version}.{}", crate::id::escape_kv_token(subject))
}
