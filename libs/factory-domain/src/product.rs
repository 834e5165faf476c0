//! Products: a name and a bill of materials; defined once, changed, retired.

use jetsource_core::command::fields;
use jetsource_core::{Aggregate, Command, DomainError, DomainEvent};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::values::{self, BomLine};

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
#[derive(Debug, Clone, PartialEq, Eq, Command)]
#[command(aggregate = Product)]
pub enum ProductCommand {
    /// Defines the product: its name and bill of materials.
    #[command(example = r#"{"name": "Widget", "bom": [{"sku": "bolt", "qty": 4}, {"sku": "plate", "qty": 1}]}"#)]
    Define {
        /// Display name (1 to 200 characters, not blank).
        #[serde(deserialize_with = "fields::text")]
        #[schemars(length(min = 1, max = 200))]
        name: String,
        /// Bill of materials: each SKU once.
        #[serde(deserialize_with = "values::bom")]
        bom: Vec<BomLine>,
    },
    /// Replaces the bill of materials.
    #[command(example = r#"{"bom": [{"sku": "bolt", "qty": 6}]}"#)]
    ChangeBom {
        /// The new bill of materials: each SKU once.
        #[serde(deserialize_with = "values::bom")]
        bom: Vec<BomLine>,
    },
    /// Retires the product: it can no longer be planned.
    Retire,
}

/// What happened to a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
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
