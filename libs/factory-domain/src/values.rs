//! Validated values of the domain. Each refuses bad input when it is deserialised, so a
//! command that parsed is well formed.

use std::fmt;

use std::borrow::Cow;

use jetsource_core::AggregateId;
use jetsource_core::schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, de};

/// A positive quantity (1 or more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Qty(u64);

impl Qty {
    /// `n` if it is positive.
    pub fn new(n: u64) -> Option<Self> {
        (n > 0).then_some(Self(n))
    }

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Qty {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(deserializer)?;
        Qty::new(n).ok_or_else(|| de::Error::custom("must be a positive integer, not 0"))
    }
}

impl JsonSchema for Qty {
    fn schema_name() -> Cow<'static, str> {
        "Qty".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "minimum": 1, "description": "a positive quantity"})
    }
}

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Checks a token that becomes part of a stock id: 1–60 characters of `[A-Za-z0-9_-]`.
fn check_token(kind: &str, text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 60 {
        return Err(format!("{kind} must be 1 to 60 characters, got {}", text.len()));
    }
    match text.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-'))) {
        Some(c) => Err(format!("{kind} {text:?} contains {c:?}; allowed are A-Z a-z 0-9 _ -")),
        None => Ok(()),
    }
}

macro_rules! token_type {
    ($name:ident, $kind:literal, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps.
            ///
            /// # Errors
            /// A message naming the bad character or length.
            pub fn new(text: impl Into<String>) -> Result<Self, String> {
                let text = text.into();
                check_token($kind, &text)?;
                Ok(Self(text))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                $name::new(String::deserialize(deserializer)?).map_err(de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,60}$", "description": $doc})
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

token_type!(Sku, "sku", "A stock keeping unit: 1–60 characters of `[A-Za-z0-9_-]`.");
token_type!(Warehouse, "warehouse", "A warehouse name: 1–60 characters of `[A-Za-z0-9_-]`.");

/// The id of a stock aggregate: `<sku>@<warehouse>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StockId {
    /// The SKU.
    pub sku: Sku,
    /// The warehouse.
    pub warehouse: Warehouse,
}

impl StockId {
    /// The stock of `sku` in `warehouse`.
    pub fn new(sku: Sku, warehouse: Warehouse) -> Self {
        Self { sku, warehouse }
    }

    /// Parses `<sku>@<warehouse>`.
    ///
    /// # Errors
    /// A message saying what is wrong with the id.
    pub fn parse(id: &str) -> Result<Self, String> {
        let (sku, warehouse) =
            id.split_once('@').ok_or_else(|| format!("stock id {id:?} must be <sku>@<warehouse>"))?;
        Ok(Self { sku: Sku::new(sku)?, warehouse: Warehouse::new(warehouse)? })
    }

    /// As an aggregate id.
    pub fn aggregate_id(&self) -> AggregateId {
        // Both parts are validated tokens, so the joined id is always valid.
        AggregateId::new(self.to_string()).unwrap_or_else(|_| unreachable!("validated parts"))
    }
}

impl fmt::Display for StockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.sku, self.warehouse)
    }
}

/// One line of a bill of materials: `qty` of `sku` per unit produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource_core::schemars")]
#[serde(deny_unknown_fields)]
pub struct BomLine {
    /// The resource.
    pub sku: Sku,
    /// How many per unit.
    pub qty: Qty,
}

/// Reads a bill of materials that names each SKU once (for `#[serde(deserialize_with)]`).
///
/// # Errors
/// A line that does not parse, or a SKU named twice.
pub fn bom<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<BomLine>, D::Error> {
    let bom = Vec::<BomLine>::deserialize(deserializer)?;
    check_bom(&bom).map_err(de::Error::custom)?;
    Ok(bom)
}

/// The most lines a bill of materials holds: a product decision reads each line's SKU as a
/// product (ADR 18), and a command's batch holds at most 1000 messages.
pub const MAX_BOM_LINES: usize = 200;

/// Checks that a bill of materials names each SKU once, in at most [`MAX_BOM_LINES`] lines.
///
/// # Errors
/// A message naming the repeated SKU, or the length.
pub fn check_bom(bom: &[BomLine]) -> Result<(), String> {
    if bom.len() > MAX_BOM_LINES {
        return Err(format!("bom has {} lines; at most {MAX_BOM_LINES}", bom.len()));
    }
    for (i, line) in bom.iter().enumerate() {
        if bom[..i].iter().any(|l| l.sku == line.sku) {
            return Err(format!("bom names sku {} twice", line.sku));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_positive_integers() {
        assert_eq!(serde_json::from_str::<Qty>("3").unwrap().get(), 3);
        for bad in ["0", "-1", "1.5", "\"3\"", "null"] {
            assert!(serde_json::from_str::<Qty>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stock_ids_are_sku_at_warehouse() {
        let id = StockId::parse("bolt@main").unwrap();
        assert_eq!((id.sku.as_str(), id.warehouse.as_str()), ("bolt", "main"));
        assert_eq!(id.aggregate_id().as_str(), "bolt@main");
        for bad in ["bolt", "@main", "bolt@", "a@b@c", "bo lt@main"] {
            assert!(StockId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_bom_names_each_sku_once() {
        let line = |sku: &str| BomLine { sku: Sku::new(sku).unwrap(), qty: Qty::new(1).unwrap() };
        assert!(check_bom(&[line("a"), line("b")]).is_ok());
        assert!(check_bom(&[line("a"), line("a")]).unwrap_err().contains("twice"));
    }
}
