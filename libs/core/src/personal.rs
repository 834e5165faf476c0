//! Personal data, declared by its type: a field of type [`Personal<T>`] holds data about one
//! data subject (a person), named by a pseudonymous id. The framework seals it with the
//! subject's key before anything is stored (event, snapshot, view document) and opens it only
//! in what it answers; once the subject's key is forgotten it reads as erased, everywhere and
//! for good (crypto-shredding, `docs/adr/0017`).
//!
//! On the wire and in storage a personal value is one JSON object:
//! `{"$subject": "<id>", "$sealed": "<base64>"}` as stored, `{"$subject": "<id>", "$plain":
//! <value>}` only in flight (from the domain to the sealing), and `{"$subject": "<id>",
//! "$erased": true}` once the key is gone. Answers show the plain value in its place, or the
//! erased object.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The key naming a personal value's data subject.
pub const SUBJECT: &str = "$subject";
/// The key of a plain value, before sealing.
pub const PLAIN: &str = "$plain";
/// The key of a sealed value (base64 of nonce and ciphertext).
pub const SEALED: &str = "$sealed";
/// The key marking a value whose subject was forgotten.
pub const ERASED: &str = "$erased";

/// Personal data of one data subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Personal<T> {
    /// As the domain produced it: sealed before it is stored.
    Plain {
        /// The data subject's id.
        subject: String,
        /// The data.
        value: T,
    },
    /// Encrypted with the data subject's key, as stored.
    Sealed {
        /// The data subject's id.
        subject: String,
        /// Base64 of nonce and ciphertext.
        sealed: String,
    },
    /// The subject's key was forgotten: the data is gone.
    Erased {
        /// The data subject's id.
        subject: String,
    },
}

impl<T> Personal<T> {
    /// `value`, about data subject `subject`.
    pub fn new(subject: impl Into<String>, value: T) -> Self {
        Personal::Plain { subject: subject.into(), value }
    }

    /// The data subject's id.
    pub fn subject(&self) -> &str {
        match self {
            Personal::Plain { subject, .. } | Personal::Sealed { subject, .. } | Personal::Erased { subject } => {
                subject
            }
        }
    }

    /// The value, where it is in plain (the domain's own, before it was stored).
    pub fn value(&self) -> Option<&T> {
        match self {
            Personal::Plain { value, .. } => Some(value),
            _ => None,
        }
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = Map::new();
        map.insert(SUBJECT.into(), Value::String(self.subject().to_owned()));
        match self {
            Personal::Plain { value, .. } => {
                map.insert(PLAIN.into(), serde_json::to_value(value).map_err(serde::ser::Error::custom)?);
            }
            Personal::Sealed { sealed, .. } => {
                map.insert(SEALED.into(), Value::String(sealed.clone()));
            }
            Personal::Erased { .. } => {
                map.insert(ERASED.into(), Value::Bool(true));
            }
        }
        map.serialize(serializer)
    }
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Personal<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = Map::deserialize(deserializer)?;
        let subject = match map.remove(SUBJECT) {
            Some(Value::String(s)) => s,
            _ => return Err(D::Error::custom("a personal value names its data subject ($subject)")),
        };
        if let Some(value) = map.remove(PLAIN) {
            let value = serde_json::from_value(value).map_err(D::Error::custom)?;
            return Ok(Personal::Plain { subject, value });
        }
        if let Some(Value::String(sealed)) = map.remove(SEALED) {
            return Ok(Personal::Sealed { subject, sealed });
        }
        if map.remove(ERASED).is_some() {
            return Ok(Personal::Erased { subject });
        }
        Err(D::Error::custom("a personal value is $plain, $sealed or $erased"))
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Personal<T> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Personal_{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let value = generator.subschema_for::<T>();
        schemars::json_schema!({
            "description": "Personal data of one data subject: the value, or {\"$subject\": id, \"$erased\": true} once the subject was forgotten",
            "anyOf": [value, {
                "type": "object",
                "properties": { "$subject": { "type": "string" }, "$erased": { "const": true } },
                "required": ["$subject", "$erased"]
            }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_round_trips_as_one_object() {
        for value in [
            Personal::new("c-1", "Ada".to_owned()),
            Personal::Sealed { subject: "c-1".into(), sealed: "AAAA".into() },
            Personal::Erased { subject: "c-1".into() },
        ] {
            let json = serde_json::to_value(&value).unwrap();
            assert_eq!(json[SUBJECT], "c-1");
            assert_eq!(serde_json::from_value::<Personal<String>>(json).unwrap(), value);
        }
        assert!(serde_json::from_str::<Personal<String>>(r#"{"$plain": "x"}"#).is_err());
        assert!(serde_json::from_str::<Personal<String>>(r#"{"$subject": "c", "other": 1}"#).is_err());
    }
}
