//! Aggregate identity: validated ids, the subjects and KV keys built from them.

use std::fmt;

use thiserror::Error;

/// The longest aggregate id accepted (`docs/contracts/nats.md`).
pub const MAX_ID_LEN: usize = 128;

/// An aggregate id that is safe to put into a NATS subject token: 1–128 characters of
/// `[A-Za-z0-9_@-]`. Stock ids have the form `<sku>@<warehouse>`.
///
/// Every subject the framework builds goes through this type, so a `.`, `*`, `>` or whitespace
/// in user input can never widen a subscription or an OCC filter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AggregateId(String);

/// Why an aggregate id (or aggregate type name) was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    /// The id was empty.
    #[error("aggregate id is empty")]
    Empty,
    /// The id was longer than [`MAX_ID_LEN`] characters.
    #[error("aggregate id is {len} characters long; the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Length of the refused id in characters.
        len: usize,
    },
    /// The id held a character outside `[A-Za-z0-9_@-]`.
    #[error("aggregate id contains {found:?} at position {position}; allowed are A-Z a-z 0-9 _ @ -")]
    BadCharacter {
        /// The first offending character.
        found: char,
        /// Its zero-based character position.
        position: usize,
    },
}

impl AggregateId {
    /// Validates `id` (`docs/contracts/nats.md`) and wraps it.
    ///
    /// # Errors
    /// [`IdError`] naming what is wrong; nothing is built from a refused id.
    pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
        let id = id.into();
        validate(&id)?;
        Ok(Self(id))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a KV key token. KV keys do not allow `@`, and `=` never appears in an id, so
    /// mapping `@` to `=` is reversible and keeps keys readable (`bolt=main`).
    pub fn kv_token(&self) -> String {
        self.0.replace('@', "=")
    }

    /// Reverses [`AggregateId::kv_token`].
    ///
    /// # Errors
    /// [`IdError`] when the token does not come from a valid id.
    pub fn from_kv_token(token: &str) -> Result<Self, IdError> {
        Self::new(token.replace('=', "@"))
    }
}

fn validate(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    let mut len = 0;
    for (position, c) in id.chars().enumerate() {
        if !(c.is_ascii_alphanumeric() || matches!(c, '_' | '@' | '-')) {
            return Err(IdError::BadCharacter { found: c, position });
        }
        len = position + 1;
    }
    if len > MAX_ID_LEN {
        return Err(IdError::TooLong { len });
    }
    Ok(())
}

/// A reversible KV-key spelling of any text: bytes outside `[A-Za-z0-9_-]` become `=XX` (hex).
/// Used for keys made from command ids and idempotency keys, which may hold `:`, `.` or `@`.
pub fn escape_kv_token(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push('=');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
    out
}

/// Reverses [`escape_kv_token`]; `None` when `token` is not such a spelling.
pub fn unescape_kv_token(token: &str) -> Option<String> {
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Checks an aggregate *type* name (`stock`, `order`): lower-case ASCII letters, digits and `-`,
/// as it becomes a subject token and a `ce-type` segment.
///
/// # Errors
/// [`IdError::BadCharacter`] or [`IdError::Empty`].
pub fn validate_type_name(name: &str) -> Result<(), IdError> {
    if name.is_empty() {
        return Err(IdError::Empty);
    }
    match name.chars().enumerate().find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-')) {
        Some((position, found)) => Err(IdError::BadCharacter { found, position }),
        None => Ok(()),
    }
}

impl fmt::Display for AggregateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for AggregateId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for AggregateId {
    type Error = IdError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl TryFrom<String> for AggregateId {
    type Error = IdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for id in ["a", "bolt@main", "A-Z_09", &"x".repeat(MAX_ID_LEN)] {
            assert!(AggregateId::new(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_what_would_change_a_subject() {
        assert_eq!(AggregateId::new(""), Err(IdError::Empty));
        assert_eq!(AggregateId::new("a.b"), Err(IdError::BadCharacter { found: '.', position: 1 }));
        for bad in ["*", ">", "a b", "é", "a\n", "a/b"] {
            assert!(matches!(AggregateId::new(bad), Err(IdError::BadCharacter { .. })), "{bad:?}");
        }
        assert_eq!(AggregateId::new("x".repeat(MAX_ID_LEN + 1)), Err(IdError::TooLong { len: MAX_ID_LEN + 1 }));
    }

    #[test]
    fn kv_tokens_round_trip() {
        let id = AggregateId::new("bolt@main").unwrap();
        assert_eq!(id.kv_token(), "bolt=main");
        assert_eq!(AggregateId::from_kv_token("bolt=main").unwrap(), id);
    }

    #[test]
    fn any_text_has_a_reversible_kv_spelling() {
        for text in ["plain-id_1", "a:b.c@d=e", "cmd:01ab:0", "ünï"] {
            let token = escape_kv_token(text);
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-=".contains(&b)), "{token}");
            assert_eq!(unescape_kv_token(&token).as_deref(), Some(text));
        }
        assert_eq!(escape_kv_token("a:b"), "a=3Ab");
        assert_ne!(escape_kv_token("a=3A"), escape_kv_token("a:"));
    }

    #[test]
    fn type_names_are_lower_case_tokens() {
        assert!(validate_type_name("stock").is_ok());
        assert!(validate_type_name("Stock").is_err());
        assert!(validate_type_name("a.b").is_err());
        assert!(validate_type_name("").is_err());
    }
}
