//! Products: a name and a bill of materials; defined once, changed, retired.

use jetsource::{Aggregate, DomainError, DomainEvent};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::command::{AggregateKind, CommandError, Empty, parse_body};
use crate::values::{BomLine, check_bom};

/// The product aggregate's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Whether `define` happened.
    pub defined: bool,
    /// Display name.
    pub name: String,
    /// What one unit needs.
    pub bom: Vec<BomLine>,
    /// Retired products cannot be planned.
    pub retired: bool,
}

/// What a product can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductCommand {
    /// `define`: `{name, bom}`.
    Define {
        /// Display name (not blank).
        name: String,
        /// Bill of materials.
        bom: Vec<BomLine>,
    },
    /// `change-bom`: `{bom}`.
    ChangeBom {
        /// The new bill of materials.
        bom: Vec<BomLine>,
    },
    /// `retire`: `{}`.
    Retire,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefineBody {
    name: String,
    bom: Vec<BomLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeBomBody {
    bom: Vec<BomLine>,
}

impl ProductCommand {
    /// Parses command `name` with JSON `body`.
    ///
    /// # Errors
    /// [`CommandError`]: unknown command, or a body that does not fit.
    pub fn parse(name: &str, body: &[u8]) -> Result<Self, CommandError> {
        let command = match AggregateKind::Product.command(name)?.name {
            "define" => {
                let DefineBody { name, bom } = parse_body(body)?;
                if name.trim().is_empty() || name.chars().count() > 200 {
                    return Err(CommandError::InvalidBody("name: must be 1 to 200 characters, not blank".into()));
                }
                ProductCommand::Define { name, bom }
            }
            "change-bom" => ProductCommand::ChangeBom { bom: parse_body::<ChangeBomBody>(body)?.bom },
            _ => {
                parse_body::<Empty>(body)?;
                ProductCommand::Retire
            }
        };
        if let ProductCommand::Define { bom, .. } | ProductCommand::ChangeBom { bom } = &command {
            check_bom(bom).map_err(|e| CommandError::InvalidBody(format!("bom: {e}")))?;
        }
        Ok(command)
    }
}

/// What happened to a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum ProductEvent {
    /// It was defined.
    ProductDefined {
        /// Display name.
        name: String,
        /// Bill of materials.
        bom: Vec<BomLine>,
    },
    /// Its bill of materials changed.
    BomChanged {
        /// The new bill of materials.
        bom: Vec<BomLine>,
    },
    /// It was retired.
    ProductRetired {},
}

impl DomainEvent for ProductEvent {
    const SCHEMAS: &'static [(&'static str, u32)] = &[("ProductDefined", 1), ("BomChanged", 1), ("ProductRetired", 1)];

    fn event_type(&self) -> &'static str {
        match self {
            ProductEvent::ProductDefined { .. } => "ProductDefined",
            ProductEvent::BomChanged { .. } => "BomChanged",
            ProductEvent::ProductRetired {} => "ProductRetired",
        }
    }
}

/// Why a product refused a command.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProductError {
    /// `define` on a product that exists.
    #[error("the product is already defined")]
    AlreadyDefined,
    /// Any other command on a product that was never defined.
    #[error("no such product")]
    NotFound,
    /// `change-bom` on a retired product.
    #[error("the product is retired")]
    Retired,
    /// `retire` twice.
    #[error("the product is already retired")]
    AlreadyRetired,
}

impl DomainError for ProductError {
    fn reason(&self) -> &'static str {
        match self {
            ProductError::AlreadyDefined => "already_defined",
            ProductError::NotFound => "not_found",
            ProductError::Retired => "retired",
            ProductError::AlreadyRetired => "already_retired",
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, ProductError::NotFound)
    }
}

impl Aggregate for Product {
    const TYPE: &'static str = "product";
    type Command = ProductCommand;
    type Event = ProductEvent;
    type Error = ProductError;

    fn handle(&self, command: ProductCommand) -> Result<Vec<ProductEvent>, ProductError> {
        match command {
            ProductCommand::Define { .. } if self.defined => Err(ProductError::AlreadyDefined),
            ProductCommand::Define { name, bom } => Ok(vec![ProductEvent::ProductDefined { name, bom }]),
            _ if !self.defined => Err(ProductError::NotFound),
            ProductCommand::ChangeBom { .. } if self.retired => Err(ProductError::Retired),
            ProductCommand::ChangeBom { bom } => Ok(vec![ProductEvent::BomChanged { bom }]),
            ProductCommand::Retire if self.retired => Err(ProductError::AlreadyRetired),
            ProductCommand::Retire => Ok(vec![ProductEvent::ProductRetired {}]),
        }
    }

    fn apply(&mut self, event: &ProductEvent) {
        match event {
            ProductEvent::ProductDefined { name, bom } => {
                self.defined = true;
                self.name = name.clone();
                self.bom = bom.clone();
            }
            ProductEvent::BomChanged { bom } => self.bom = bom.clone(),
            ProductEvent::ProductRetired {} => self.retired = true,
        }
    }
}
