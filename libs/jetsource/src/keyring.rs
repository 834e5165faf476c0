//! Crypto-shredding (`docs/adr/0017`): one AES-256-GCM key per data subject, in the `KEYS`
//! stream (`keys.<subject>`, one message each). Every [`Personal`](crate::Personal) value is
//! sealed with its subject's key before it is stored and opened only in answers; forgetting a
//! subject erases its key (the server overwrites the message on disk), after which its values
//! read as erased wherever they are: events, the archive, snapshots, views.

use std::collections::HashMap;

use async_nats::jetstream;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Map, Value};

use crate::error::StoreError;
use crate::id::escape_kv_token;
use crate::personal::{ERASED, PLAIN, SEALED, SUBJECT};

const KEY_LEN: usize = 32;

/// What `keys.<subject>` holds once the subject was forgotten: no key is created for it again,
/// and its new personal values are stored erased.
const FORGOTTEN: &[u8] = b"forgotten";

/// The state of one data subject's key.
enum Key {
    /// Never seen.
    None,
    /// Its key, at this stream sequence.
    Live(Vec<u8>, u64),
    /// Forgotten (the tombstone at this stream sequence).
    Forgotten,
}

/// The subject prefix of the keys: `keys.<subject as a KV token>`.
pub const KEYS_PREFIX: &str = "keys";

/// The keys of the data subjects.
#[derive(Debug, Clone)]
pub struct Keyring {
    js: jetstream::Context,
    stream: String,
    prefix: String,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("keys: {e}"))
}

/// Whether serialized JSON may hold a personal value in plain (cheap, before parsing).
pub fn holds_plain(json: &[u8]) -> bool {
    json.windows(PLAIN.len() + 2).any(|w| w[0] == b'"' && &w[1..=PLAIN.len()] == PLAIN.as_bytes())
}

impl Keyring {
    /// The keys in `stream` (`KEYS`), on subjects `keys.<subject>`.
    pub fn new(js: jetstream::Context, stream: impl Into<String>) -> Self {
        Self { js, stream: stream.into(), prefix: KEYS_PREFIX.into() }
    }

    fn subject_of(&self, data_subject: &str) -> String {
        format!("{}.{}", self.prefix, escape_kv_token(data_subject))
    }

    /// The key of `data_subject`, or its tombstone.
    async fn stored(&self, data_subject: &str) -> Result<Key, StoreError> {
        let request = serde_json::json!({ "last_by_subj": self.subject_of(data_subject) });
        let found = crate::store::read::direct_get(
            &self.js.client(),
            &self.stream,
            &request,
            std::time::Duration::from_secs(5),
        )
        .await
        .map_err(unavailable)?;
        let reply = match found {
            crate::store::read::Got::Message(reply) => reply,
            crate::store::read::Got::Missing => return Ok(Key::None),
            crate::store::read::Got::NoStream => {
                return Err(unavailable(format!(
                    "stream {} does not answer; is the topology provisioned?",
                    self.stream
                )));
            }
        };
        if reply.payload.as_ref() == FORGOTTEN {
            return Ok(Key::Forgotten);
        }
        let seq = reply.headers.as_ref().and_then(|h| h.get("Nats-Sequence")).and_then(|v| v.as_str().parse().ok());
        let key = STANDARD.decode(&reply.payload).map_err(|e| StoreError::Internal(format!("a key: {e}")))?;
        Ok(Key::Live(key, seq.unwrap_or(0)))
    }

    /// The key of `data_subject`, created if it has none; none once it was forgotten.
    async fn key_for_sealing(&self, data_subject: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.stored(data_subject).await? {
            Key::Live(key, _) => return Ok(Some(key)),
            Key::Forgotten => return Ok(None),
            Key::None => {}
        }
        let mut key = vec![0; KEY_LEN];
        SystemRandom::new().fill(&mut key).map_err(|_| StoreError::Internal("no randomness for a key".into()))?;
        let mut headers = async_nats::HeaderMap::new();
        // Only if there is none: two writers sealing for a new subject keep the first key.
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
        let published = self
            .js
            .publish_with_headers(self.subject_of(data_subject), headers, STANDARD.encode(&key).into())
            .await
            .map_err(unavailable)?
            .await;
        match published {
            Ok(_) => Ok(Some(key)),
            Err(_) => match self.stored(data_subject).await? {
                Key::Live(key, _) => Ok(Some(key)),
                Key::Forgotten => Ok(None),
                Key::None => Err(unavailable("the key could not be written")),
            },
        }
    }

    /// Seals every plain personal value in `value` with its subject's key (creating keys as
    /// needed); the value of a forgotten subject is stored erased. Returns whether anything
    /// was sealed.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the keys do not answer.
    pub async fn seal(&self, value: &mut Value) -> Result<bool, StoreError> {
        let mut plain = Vec::new();
        collect(value, PLAIN, &mut plain);
        if plain.is_empty() {
            return Ok(false);
        }
        let mut keys = HashMap::new();
        for subject in &plain {
            if !keys.contains_key(subject) {
                keys.insert(subject.clone(), self.key_for_sealing(subject).await?);
            }
        }
        let mut failure = None;
        rewrite(value, PLAIN, &mut |subject, plain| match &keys[subject] {
            None => erased(subject),
            Some(key) => match seal(key, subject, plain) {
                Ok(sealed) => sealed,
                Err(e) => {
                    failure = Some(e);
                    Value::Null
                }
            },
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(true),
        }
    }

    /// Opens every sealed personal value in `value`: its plain value in its place, or the
    /// erased marker where the subject's key is gone, or where the value does not open with
    /// the key there is (sealed under a key that was since forgotten; or altered, which is
    /// logged).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the keys do not answer.
    pub async fn reveal(&self, value: &mut Value) -> Result<(), StoreError> {
        let mut sealed = Vec::new();
        collect(value, SEALED, &mut sealed);
        if sealed.is_empty() {
            return Ok(());
        }
        let mut keys = HashMap::new();
        for subject in &sealed {
            if !keys.contains_key(subject) {
                let key = match self.stored(subject).await? {
                    Key::Live(key, _) => Some(key),
                    Key::None | Key::Forgotten => None,
                };
                keys.insert(subject.clone(), key);
            }
        }
        rewrite(value, SEALED, &mut |subject, sealed| match &keys[subject] {
            None => erased(subject),
            Some(key) => open(key, subject, sealed).unwrap_or_else(|e| {
                tracing::warn!(data_subject = subject, error = %e, "a personal value does not open; shown erased");
                erased(subject)
            }),
        });
        Ok(())
    }

    /// Forgets `data_subject`: its key is erased from the keys stream (the server overwrites
    /// it on disk), then a tombstone takes its place, so every value sealed with the key reads
    /// as erased from now on and new values of the subject are stored erased. Returns false
    /// when it had no key (never seen, or forgotten before); the tombstone is written either
    /// way, so a forget that stopped halfway is finished by the next.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the keys do not answer.
    pub async fn forget(&self, data_subject: &str) -> Result<bool, StoreError> {
        let had_key = match self.stored(data_subject).await? {
            Key::Forgotten => return Ok(false),
            Key::Live(_, seq) => {
                let stream = self.js.get_stream(&self.stream).await.map_err(unavailable)?;
                stream.delete_message(seq).await.map_err(unavailable)?;
                true
            }
            Key::None => false,
        };
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
        let written = self
            .js
            .publish_with_headers(self.subject_of(data_subject), headers, FORGOTTEN.into())
            .await
            .map_err(unavailable)?
            .await;
        match written {
            Ok(_) => Ok(had_key),
            // A key was created meanwhile (a command sealing for the subject): forget it too.
            Err(e) if e.kind() == async_nats::jetstream::context::PublishErrorKind::WrongLastSequence => {
                Box::pin(self.forget(data_subject)).await.map(|_| true)
            }
            Err(e) => Err(unavailable(e)),
        }
    }
}

fn erased(subject: &str) -> Value {
    let mut map = Map::new();
    map.insert(SUBJECT.into(), Value::String(subject.to_owned()));
    map.insert(ERASED.into(), Value::Bool(true));
    Value::Object(map)
}

/// The subjects of every personal object holding `field`.
fn collect(value: &Value, field: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(subject)), true) = (map.get(SUBJECT), map.contains_key(field)) {
                out.push(subject.clone());
                return;
            }
            map.values().for_each(|v| collect(v, field, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect(v, field, out)),
        _ => {}
    }
}

/// Replaces every personal object holding `field` by what `with(subject, field value)` makes.
fn rewrite(value: &mut Value, field: &str, with: &mut dyn FnMut(&str, &Value) -> Value) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(subject)), Some(inner)) = (map.get(SUBJECT), map.get(field)) {
                let replacement = with(subject, inner);
                *value = replacement;
                return;
            }
            map.values_mut().for_each(|v| rewrite(v, field, with));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite(v, field, with)),
        _ => {}
    }
}

fn cipher(key: &[u8]) -> Result<LessSafeKey, StoreError> {
    let key =
        UnboundKey::new(&AES_256_GCM, key).map_err(|_| StoreError::Internal("a key of the wrong length".into()))?;
    Ok(LessSafeKey::new(key))
}

/// `{"$subject", "$sealed": base64(nonce ‖ ciphertext ‖ tag)}`, the subject as associated data.
fn seal(key: &[u8], subject: &str, plain: &Value) -> Result<Value, StoreError> {
    let mut nonce = [0; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| StoreError::Internal("no randomness for a nonce".into()))?;
    let mut data = serde_json::to_vec(plain).map_err(|e| StoreError::Internal(e.to_string()))?;
    cipher(key)?
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(subject.as_bytes()), &mut data)
        .map_err(|_| StoreError::Internal("sealing failed".into()))?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&data);
    let mut map = Map::new();
    map.insert(SUBJECT.into(), Value::String(subject.to_owned()));
    map.insert(SEALED.into(), Value::String(STANDARD.encode(sealed)));
    Ok(Value::Object(map))
}

fn open(key: &[u8], subject: &str, sealed: &Value) -> Result<Value, StoreError> {
    let altered = || StoreError::Internal(format!("a sealed value of data subject {subject} does not open"));
    let bytes = sealed.as_str().and_then(|s| STANDARD.decode(s).ok()).ok_or_else(altered)?;
    if bytes.len() < NONCE_LEN {
        return Err(altered());
    }
    let (nonce, data) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| altered())?;
    let mut data = data.to_vec();
    let plain = cipher(key)?.open_in_place(nonce, Aad::from(subject.as_bytes()), &mut data).map_err(|_| altered())?;
    serde_json::from_slice(plain).map_err(|_| altered())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_and_subject_only() {
        let key = vec![7; KEY_LEN];
        let plain = serde_json::json!({"name": "Ada", "email": "ada@example.com"});
        let sealed = seal(&key, "c-1", &plain).unwrap();
        let text = sealed.to_string();
        assert!(!text.contains("Ada") && !text.contains("ada@"), "{text}");
        assert_eq!(open(&key, "c-1", &sealed[SEALED]).unwrap(), plain);
        assert!(open(&key, "c-2", &sealed[SEALED]).is_err(), "bound to its subject");
        assert!(open(&[8; KEY_LEN], "c-1", &sealed[SEALED]).is_err(), "another key");
        assert!(open(&key, "c-1", &Value::String("AAAA".into())).is_err());
    }

    #[test]
    fn personal_objects_are_found_at_any_depth() {
        let mut value =
            serde_json::json!({"a": [{"$subject": "c-1", "$plain": 1}], "b": {"$subject": "c-2", "$plain": 2}});
        let mut found = Vec::new();
        collect(&value, PLAIN, &mut found);
        assert_eq!(found, ["c-1", "c-2"]);
        rewrite(&mut value, PLAIN, &mut |subject, _| erased(subject));
        assert_eq!(value["b"][ERASED], true);
        assert!(holds_plain(br#"{"$subject":"c","$plain":1}"#) && !holds_plain(br#"{"plain":1}"#));
    }
}
