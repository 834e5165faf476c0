//! The idempotency ledger: for 24 h, an `Idempotency-Key` maps to the fingerprint of the
//! request it first came with and the reply it got. The same key with the same request
//! replays that reply; with another request it is refused (`idempotency_key_reused`).
//!
//! The event store already makes a retried command write once (message ids and the
//! aggregate's recent commands); the ledger adds the 24 h memory, the reply of commands that
//! were rejected, and the check that a key is not reused for something else.

use async_nats::jetstream::{self, kv};
use ring::digest;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A ledger failure (the bucket did not answer).
#[derive(Debug, thiserror::Error)]
#[error("idempotency ledger unavailable: {0}")]
pub struct LedgerError(String);

/// What the ledger remembers of one key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// SHA-256 of the request (type, id, command, expected version, canonical body).
    pub fingerprint: String,
    /// HTTP-like status of the first reply (200, 202, or the error's).
    pub status: u16,
    /// The first reply's JSON body.
    pub reply: Value,
}

/// The ledger over a KV bucket whose values expire after 24 h.
#[derive(Debug, Clone)]
pub struct Ledger {
    kv: kv::Store,
}

impl Ledger {
    /// Opens the bucket (provisioned from the topology).
    ///
    /// # Errors
    /// [`LedgerError`] when it does not exist or JetStream does not answer.
    pub async fn open(js: &jetstream::Context, bucket: &str) -> Result<Self, LedgerError> {
        let kv = js.get_key_value(bucket).await.map_err(|e| LedgerError(format!("bucket {bucket}: {e}")))?;
        Ok(Self { kv })
    }

    /// The entry of `key`, if the key was used in the last 24 h.
    ///
    /// # Errors
    /// [`LedgerError`].
    pub async fn get(&self, key: &str) -> Result<Option<Entry>, LedgerError> {
        let Some(raw) = self.kv.get(kv_key(key)).await.map_err(|e| LedgerError(e.to_string()))? else {
            return Ok(None);
        };
        serde_json::from_slice(&raw).map(Some).map_err(|e| LedgerError(format!("corrupt entry for {key}: {e}")))
    }

    /// Records the first reply for `key`. When another request recorded one first, returns
    /// that entry instead.
    ///
    /// # Errors
    /// [`LedgerError`].
    pub async fn record(&self, key: &str, entry: &Entry) -> Result<Option<Entry>, LedgerError> {
        let value = serde_json::to_vec(entry).map_err(|e| LedgerError(e.to_string()))?;
        match self.kv.create(kv_key(key), value.into()).await {
            Ok(_) => Ok(None),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => self.get(key).await,
            Err(e) => Err(LedgerError(e.to_string())),
        }
    }
}

/// A KV-safe, reversible spelling of an idempotency key.
pub fn kv_key(key: &str) -> String {
    jetsource::id::escape_kv_token(key)
}

/// The fingerprint of a request: SHA-256 over its parts, the body canonicalised (a JSON body is
/// re-serialised with sorted keys, so whitespace and key order do not matter).
pub fn fingerprint(aggregate_type: &str, id: &str, command: &str, expected: Option<u64>, body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<Value>(body).ok().and_then(|v| serde_json::to_vec(&v).ok());
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [
        aggregate_type.as_bytes(),
        id.as_bytes(),
        command.as_bytes(),
        expected.map(|v| v.to_string()).unwrap_or_default().as_bytes(),
    ] {
        ctx.update(part);
        ctx.update(&[0]);
    }
    ctx.update(canonical.as_deref().unwrap_or(body));
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_spelled_for_kv_without_collisions() {
        assert_eq!(kv_key("order-1_a"), "order-1_a");
        assert_eq!(kv_key("a:b.c@d=e"), "a=3Ab=2Ec=40d=3De");
        assert_ne!(kv_key("a=3A"), kv_key("a:"));
    }

    #[test]
    fn fingerprints_ignore_json_layout_but_not_content() {
        let a = fingerprint("stock", "bolt@main", "receive", None, br#"{"qty": 5, "source": "po"}"#);
        let b = fingerprint("stock", "bolt@main", "receive", None, br#"{ "source":"po","qty":5 }"#);
        let c = fingerprint("stock", "bolt@main", "receive", None, br#"{"qty": 6, "source": "po"}"#);
        let d = fingerprint("stock", "bolt@main", "receive", Some(3), br#"{"qty": 5, "source": "po"}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
