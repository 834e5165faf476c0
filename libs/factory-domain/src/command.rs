//! The command catalogue (which aggregate types take which commands) and strict parsing of
//! command bodies: malformed JSON, unknown fields, missing fields and wrong types are refused
//! with a message naming the field.

use jetsource::AggregateId;
use serde::de::DeserializeOwned;
use thiserror::Error;

use crate::values::StockId;

/// The aggregate types of the factory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AggregateKind {
    /// Products and their bills of materials (service `catalog`).
    Product,
    /// Stock of one SKU in one warehouse (service `stock`).
    Stock,
    /// Production orders (service `production`).
    Order,
}

/// One command an aggregate type takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// Its name in subjects and paths (`change-bom`).
    pub name: &'static str,
    /// True when it is answered at once as `accepted` and finishes asynchronously.
    pub asynchronous: bool,
    /// An example body.
    pub example: &'static str,
}

const fn spec(name: &'static str, example: &'static str) -> CommandSpec {
    CommandSpec { name, asynchronous: false, example }
}

const PRODUCT_COMMANDS: &[CommandSpec] = &[
    spec("define", r#"{"name": "Widget", "bom": [{"sku": "bolt", "qty": 4}, {"sku": "plate", "qty": 1}]}"#),
    spec("change-bom", r#"{"bom": [{"sku": "bolt", "qty": 6}]}"#),
    spec("retire", "{}"),
];

const STOCK_COMMANDS: &[CommandSpec] = &[
    spec("receive", r#"{"qty": 100}"#),
    spec("ship", r#"{"qty": 5}"#),
    spec("reserve", r#"{"qty": 8, "order_id": "o-1"}"#),
    spec("release", r#"{"order_id": "o-1"}"#),
    spec("consume", r#"{"order_id": "o-1"}"#),
    spec("adjust", r#"{"on_hand": 90, "reason": "stocktake"}"#),
];

const ORDER_COMMANDS: &[CommandSpec] = &[
    spec("plan", r#"{"product_id": "widget", "qty": 2, "warehouse": "main"}"#),
    CommandSpec { name: "start", asynchronous: true, example: "{}" },
    spec("complete", "{}"),
    spec("cancel", r#"{"reason": "customer withdrew"}"#),
];

impl AggregateKind {
    /// Every aggregate type.
    pub const ALL: [AggregateKind; 3] = [AggregateKind::Product, AggregateKind::Stock, AggregateKind::Order];

    /// The type named `name` (`stock`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Its name in subjects (`evt.<name>.<id>`, `cmd.<name>.<id>.<command>`).
    pub fn name(self) -> &'static str {
        match self {
            AggregateKind::Product => "product",
            AggregateKind::Stock => "stock",
            AggregateKind::Order => "order",
        }
    }

    /// The service that owns it.
    pub fn service(self) -> &'static str {
        match self {
            AggregateKind::Product => "catalog",
            AggregateKind::Stock => "stock",
            AggregateKind::Order => "production",
        }
    }

    /// The commands it takes.
    pub fn commands(self) -> &'static [CommandSpec] {
        match self {
            AggregateKind::Product => PRODUCT_COMMANDS,
            AggregateKind::Stock => STOCK_COMMANDS,
            AggregateKind::Order => ORDER_COMMANDS,
        }
    }

    /// The command named `name`.
    ///
    /// # Errors
    /// [`CommandError::UnknownCommand`] listing the commands it does take.
    pub fn command(self, name: &str) -> Result<CommandSpec, CommandError> {
        self.commands().iter().copied().find(|c| c.name == name).ok_or_else(|| CommandError::UnknownCommand {
            aggregate_type: self.name(),
            command: name.to_owned(),
            known: self.commands().iter().map(|c| c.name).collect::<Vec<_>>().join(", "),
        })
    }

    /// Validates an aggregate id of this type (stock ids must be `<sku>@<warehouse>`).
    ///
    /// # Errors
    /// [`CommandError::InvalidId`] saying why.
    pub fn id(self, id: &str) -> Result<AggregateId, CommandError> {
        let invalid = |reason: String| CommandError::InvalidId { aggregate_type: self.name(), reason };
        let id = AggregateId::new(id).map_err(|e| invalid(e.to_string()))?;
        if self == AggregateKind::Stock {
            StockId::parse(id.as_str()).map_err(invalid)?;
        }
        Ok(id)
    }
}

/// Why a command could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// No such aggregate type (`not_found`).
    #[error("unknown aggregate type {0:?}; known types: product, stock, order")]
    UnknownType(String),
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
    /// The aggregate id is malformed (`invalid`).
    #[error("invalid {aggregate_type} id: {reason}")]
    InvalidId {
        /// The aggregate type.
        aggregate_type: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The body is not the command's JSON (`invalid`).
    #[error("invalid body: {0}")]
    InvalidBody(String),
}

impl CommandError {
    /// True for the errors that mean "no such thing" (404), false for malformed input (400).
    pub fn is_not_found(&self) -> bool {
        matches!(self, CommandError::UnknownType(_) | CommandError::UnknownCommand { .. })
    }
}

/// Parses a JSON body strictly. An empty body counts as `{}`. Errors name the failing field
/// (`bom[0].qty: must be a positive integer, not 0`).
///
/// # Errors
/// [`CommandError::InvalidBody`].
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CommandError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        let json = serde_json::from_slice::<serde_json::Value>(body).is_ok();
        let what = if json { "a JSON object" } else { "JSON (malformed JSON)" };
        return Err(CommandError::InvalidBody(format!("the body must be {what}")));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("malformed JSON: {inner}")
        } else if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        };
        CommandError::InvalidBody(message)
    })?;
    deserializer.end().map_err(|e| CommandError::InvalidBody(format!("malformed JSON: {e}")))?;
    Ok(value)
}

/// Commands whose body is `{}`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Empty {}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::values::BomLine;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Define {
        name: String,
        bom: Vec<BomLine>,
    }

    fn err(body: &str) -> String {
        parse_body::<Define>(body.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_failing_field() {
        assert!(
            err(r#"{"name": "w", "bom": [{"sku": "a", "qty": 0}]}"#).contains("bom[0].qty: must be a positive integer")
        );
        assert!(err(r#"{"name": 7, "bom": []}"#).contains("name: invalid type: integer `7`, expected a string"));
        assert!(err(r#"{"name": "w", "bom": [], "colour": "red"}"#).contains("unknown field `colour`"));
        assert!(err(r#"{"name": "w"}"#).contains("missing field `bom`"));
        assert!(err(r#"{"name": "w", "bom": [{"sku": "a b", "qty": 1}]}"#).contains("bom[0].sku"));
    }

    #[test]
    fn malformed_json_and_trailing_garbage_are_invalid() {
        assert!(err(r#"{"name": "w", "#).contains("malformed JSON"));
        assert!(err(r#"{"name": "w", "bom": []} extra"#).contains("malformed JSON"));
        assert!(err("[1, 2]").contains("must be a JSON object"));
        assert!(err("nonsense").contains("malformed JSON"));
    }

    #[test]
    fn an_empty_body_is_an_empty_object() {
        assert!(parse_body::<Empty>(b"").is_ok());
        assert!(parse_body::<Empty>(b" \n").is_ok());
        assert!(parse_body::<Empty>(br#"{"x": 1}"#).is_err());
    }

    #[test]
    fn the_catalogue_knows_types_commands_and_ids() {
        assert_eq!(AggregateKind::parse("stock"), Some(AggregateKind::Stock));
        assert_eq!(AggregateKind::parse("widget"), None);
        assert!(AggregateKind::Order.command("start").unwrap().asynchronous);
        let unknown = AggregateKind::Stock.command("teleport").unwrap_err();
        assert!(unknown.is_not_found() && unknown.to_string().contains("receive, ship"));
        assert!(AggregateKind::Stock.id("bolt@main").is_ok());
        assert!(AggregateKind::Stock.id("bolt").is_err());
        assert!(AggregateKind::Product.id("bolt@main").is_ok());
        assert!(AggregateKind::Product.id("a.b").is_err());
    }
}
