//! Commands as data: a command enum declares, once, each command's name, its strict JSON body,
//! whether it answers asynchronously, and the JSON Schema of its body (`#[derive(Command)]`).
//! Everything that lists commands (routers, HTTP routes, OpenAPI, CLIs) reads [`Command::SPECS`].

use serde::de::DeserializeOwned;
use thiserror::Error;

/// One command an aggregate type takes, as declared on its command enum.
#[derive(Debug, Clone, Copy)]
pub struct CommandSpec {
    /// Its name in subjects and paths (`change-bom`).
    pub name: &'static str,
    /// True when it is answered at once as `accepted` and finishes asynchronously.
    pub asynchronous: bool,
    /// True when only services send it (over NATS); it has no HTTP route.
    pub internal: bool,
    /// An example body.
    pub example: &'static str,
    /// What it does (the variant's doc comment).
    pub description: &'static str,
    /// The JSON Schema of its body.
    pub schema: fn() -> schemars::Schema,
}

impl PartialEq for CommandSpec {
    fn eq(&self, other: &Self) -> bool {
        (self.name, self.asynchronous, self.internal) == (other.name, other.asynchronous, other.internal)
    }
}

/// A command enum: parsed from a name and a JSON body, strictly.
///
/// Implement it with `#[derive(Command)]`; the derive also writes an inherent `parse`.
pub trait Command: Sized + Clone + Send + Sync + 'static {
    /// Every command, in declaration order.
    const SPECS: &'static [CommandSpec];

    /// The name of this command.
    fn name(&self) -> &'static str;

    /// Parses command `name` with JSON `body` (an empty body counts as `{}`).
    ///
    /// # Errors
    /// [`CommandParseError`]: unknown command, or a body that does not fit.
    fn parse(name: &str, body: &[u8]) -> Result<Self, CommandParseError>;

    /// The spec of command `name`.
    fn spec(name: &str) -> Option<&'static CommandSpec> {
        Self::SPECS.iter().find(|s| s.name == name)
    }
}

/// Why a command could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandParseError {
    /// The type has no such command (`not_found`).
    #[error("{aggregate_type} has no command {command:?}; its commands: {known}")]
    UnknownCommand {
        /// The aggregate type.
        aggregate_type: &'static str,
        /// The command asked for.
        command: String,
        /// The commands it takes.
        known: String,
    },
    /// The body is not the command's JSON (`invalid`).
    #[error("invalid body: {0}")]
    InvalidBody(String),
}

impl CommandParseError {
    /// The error for a command `name` that `specs` do not list.
    pub fn unknown(aggregate_type: &'static str, name: &str, specs: &[CommandSpec]) -> Self {
        let known = specs.iter().filter(|s| !s.internal).map(|s| s.name).collect::<Vec<_>>().join(", ");
        Self::UnknownCommand { aggregate_type, command: name.to_owned(), known }
    }

    /// True for the errors that mean "no such thing" (404), false for malformed input (400).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::UnknownCommand { .. })
    }
}

/// Parses a JSON body strictly. An empty body counts as `{}`. Errors name the failing field
/// (`bom[0].qty: must be a positive integer, not 0`).
///
/// # Errors
/// [`CommandParseError::InvalidBody`].
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CommandParseError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let json = serde_json::from_slice::<serde_json::Value>(body).is_ok();
        let what = if json { "a JSON object" } else { "JSON (malformed JSON)" };
        return Err(CommandParseError::InvalidBody(format!("the body must be {what}")));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let error = match serde_path_to_error::deserialize(&mut deserializer) {
        Ok(value) => {
            return match deserializer.end() {
                Ok(()) => Ok(value),
                Err(e) => Err(CommandParseError::InvalidBody(format!("malformed JSON: {e}"))),
            };
        }
        Err(e) => e,
    };
    // A body that is not JSON at all says so, whatever field the typed read tripped on first.
    let mut whole = match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(whole) => whole,
        Err(e) => return Err(CommandParseError::InvalidBody(format!("malformed JSON: {e}"))),
    };
    // JSON has one number type: `2.0` is the integer 2. Only a body that failed is read again
    // with whole-valued numbers as integers, so the common path parses once; when it is read
    // again, its error is the one that names what is really wrong.
    let (path, inner) = if integers(&mut whole) {
        match serde_path_to_error::deserialize(whole) {
            Ok(value) => return Ok(value),
            Err(e) => (e.path().to_string(), e.into_inner()),
        }
    } else {
        (error.path().to_string(), error.into_inner())
    };
    let message = if inner.is_syntax() || inner.is_eof() {
        format!("malformed JSON: {inner}")
    } else if path == "." {
        inner.to_string()
    } else {
        format!("{path}: {inner}")
    };
    Err(CommandParseError::InvalidBody(message))
}

/// Turns whole-valued floats (`2.0`) that JSON carries exactly into integers; true when any was.
fn integers(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or(0.5);
            let exact = f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_991.0;
            if exact {
                *value = if f < 0.0 { serde_json::Value::from(f as i64) } else { serde_json::Value::from(f as u64) };
            }
            exact
        }
        serde_json::Value::Array(items) => items.iter_mut().fold(false, |any, v| integers(v) | any),
        serde_json::Value::Object(map) => map.values_mut().fold(false, |any, v| integers(v) | any),
        _ => false,
    }
}

/// Field validators for `#[serde(deserialize_with = "...")]` on command bodies.
pub mod fields {
    use serde::{Deserialize, Deserializer, de};

    /// Text of 1 to 200 characters, not blank.
    ///
    /// # Errors
    /// When the text is blank or longer.
    pub fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text.trim().is_empty() || text.chars().count() > 200 {
            return Err(de::Error::custom("must be 1 to 200 characters, not blank"));
        }
        Ok(text)
    }

    /// An optional [`text`].
    ///
    /// # Errors
    /// When the text is blank or longer.
    pub fn optional_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
        text(deserializer).map(Some)
    }

    /// The id of an aggregate (`[A-Za-z0-9_@-]`, 1–128 characters).
    ///
    /// # Errors
    /// When it is not a valid aggregate id.
    pub fn aggregate_id<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::AggregateId::new(text.as_str()).map_err(de::Error::custom)?;
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        #[serde(default)]
        n: Option<u32>,
    }

    fn err(body: &str) -> String {
        parse_body::<Body>(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_failing_field() {
        assert!(err(r#"{"name": 7}"#).contains("name: invalid type: integer `7`, expected a string"));
        assert!(err(r#"{"name": "w", "colour": "red"}"#).contains("unknown field `colour`"));
        assert!(err(r#"{"n": 1}"#).contains("missing field `name`"));
    }

    #[test]
    fn malformed_json_and_trailing_garbage_are_invalid() {
        assert!(err(r#"{"name": "w", "#).contains("malformed JSON"));
        assert!(err(r#"{"name": "w"} extra"#).contains("malformed JSON"));
        assert!(err("[1, 2]").contains("must be a JSON object"));
        assert!(err("nonsense").contains("malformed JSON"));
    }

    #[test]
    fn whole_valued_numbers_are_integers_and_others_are_not() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Count {
            n: u64,
        }
        assert_eq!(parse_body::<Count>(br#"{"n": 2.0}"#).unwrap().n, 2);
        assert!(parse_body::<Count>(br#"{"n": 2.5}"#).unwrap_err().to_string().contains("n: invalid type"));
        assert!(parse_body::<Count>(br#"{"n": 2.0} x"#).unwrap_err().to_string().contains("malformed JSON"));
    }

    #[test]
    fn an_empty_body_is_an_empty_object() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Empty {}
        assert!(parse_body::<Empty>(b"").is_ok());
        assert!(parse_body::<Empty>(b" \n").is_ok());
        assert!(parse_body::<Empty>(br#"{"x": 1}"#).is_err());
    }
}
