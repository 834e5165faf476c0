//! Products: a name and a bill of materials; defined once, changed, retired.
//!
//! Two rules span products, each kept by a conditional append over a tag (ADR 18):
//! - **Names are unique**, compared case-insensitively: `define` reads the events tagged with
//!   the name and is refused `name_taken` while another live product holds it; `retire` frees it.
//! - **A product in use is not retired:** a product listed (by its id as a SKU) in the bill of
//!   materials of a live product is refused `retire` with `in_use`, and a retired product cannot
//!   be put into a bill of materials (`component_retired`).

use std::collections::BTreeSet;

use jetsource_core::command::fields;
use jetsource_core::scope::text_key;
use jetsource_core::{Aggregate, AggregateId, Command, Decision, DomainError, DomainEvent, Scope, Seen, Tag};
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
        /// Bill of materials: each SKU once, at most 200 lines.
        #[serde(deserialize_with = "values::bom")]
        #[schemars(length(max = 200))]
        bom: Vec<BomLine>,
    },
    /// Replaces the bill of materials.
    #[command(example = r#"{"bom": [{"sku": "bolt", "qty": 6}]}"#)]
    ChangeBom {
        /// The new bill of materials: each SKU once, at most 200 lines.
        #[serde(deserialize_with = "values::bom")]
        #[schemars(length(max = 200))]
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
    /// `define` with a name another live product holds (case-insensitive).
    #[error("the name {name:?} is taken by product {by}")]
    NameTaken {
        /// The name asked for.
        name: String,
        /// The product holding it.
        by: String,
    },
    /// `retire` of a product that a live product's bill of materials lists.
    #[error("the product is a component of product {by}; change that bill of materials first")]
    InUse {
        /// A product using it.
        by: String,
    },
    /// A bill of materials listing a retired product.
    #[error("component {0} is a retired product")]
    ComponentRetired(String),
}

/// The tag of the events that take or free a name.
pub const NAME_TAG: &str = "product-name";
/// The tag of the events that add or drop a SKU in a bill of materials.
pub const COMPONENT_TAG: &str = "component";

fn name_tag(name: &str) -> Tag {
    Tag::of_text(NAME_TAG, name)
}

fn component_tag(sku: &str) -> Option<Tag> {
    AggregateId::new(sku).ok().map(|id| Tag::new(COMPONENT_TAG, &id))
}

/// The SKUs of a bill of materials as product ids.
fn components(bom: &[BomLine]) -> impl Iterator<Item = AggregateId> + '_ {
    bom.iter().filter_map(|line| AggregateId::new(line.sku.as_str()).ok())
}

/// Who holds `name`, from the events tagged with it (oldest first).
fn holder(name: &str, tagged: &[jetsource_core::Tagged<ProductEvent>]) -> Option<AggregateId> {
    let key = text_key(name);
    let mut holder = None;
    for t in tagged {
        match &t.event {
            ProductEvent::ProductDefined { name, .. } if text_key(name) == key => holder = Some(t.aggregate_id.clone()),
            ProductEvent::ProductRetired {} if holder.as_ref() == Some(&t.aggregate_id) => holder = None,
            _ => {}
        }
    }
    holder
}

/// The live products whose bill of materials lists `sku`, from the events tagged with it.
fn users(sku: &str, tagged: &[jetsource_core::Tagged<ProductEvent>]) -> BTreeSet<AggregateId> {
    let lists = |bom: &[BomLine]| bom.iter().any(|line| line.sku.as_str() == sku);
    let mut users = BTreeSet::new();
    for t in tagged {
        match &t.event {
            ProductEvent::ProductDefined { bom, .. } | ProductEvent::BomChanged { bom } if lists(bom) => {
                users.insert(t.aggregate_id.clone());
            }
            ProductEvent::ProductDefined { .. } | ProductEvent::BomChanged { .. } | ProductEvent::ProductRetired {} => {
                users.remove(&t.aggregate_id);
            }
        }
    }
    users
}

impl DomainError for ProductError {
    fn reason(&self) -> &'static str {
        match self {
            ProductError::AlreadyDefined => "already_defined",
            ProductError::NotFound => "not_found",
            ProductError::Retired => "retired",
            ProductError::AlreadyRetired => "already_retired",
            ProductError::NameTaken { .. } => "name_taken",
            ProductError::InUse { .. } => "in_use",
            ProductError::ComponentRetired(_) => "component_retired",
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
    const TAGS: &'static [&'static str] = &[NAME_TAG, COMPONENT_TAG];

    fn scope(id: &AggregateId, command: &ProductCommand) -> Scope {
        match command {
            ProductCommand::Define { name, bom } => {
                components(bom).filter(|sku| sku != id).fold(Scope::default().tag(name_tag(name)), Scope::aggregate)
            }
            ProductCommand::ChangeBom { bom } => {
                components(bom).filter(|sku| sku != id).fold(Scope::default(), Scope::aggregate)
            }
            ProductCommand::Retire => Scope::default().tag(Tag::new(COMPONENT_TAG, id)),
        }
    }

    fn decide(&self, command: ProductCommand, seen: &Seen<Self>) -> Result<Decision<ProductEvent>, ProductError> {
        let id = seen.id();
        let check_components = |bom: &[BomLine]| {
            for sku in components(bom).filter(|sku| sku != id) {
                let component = seen.aggregate(&sku);
                if component.defined && component.retired {
                    return Err(ProductError::ComponentRetired(sku.to_string()));
                }
            }
            Ok(())
        };
        match &command {
            ProductCommand::Define { name, bom } if !self.defined => {
                let by = holder(name, seen.tagged(&name_tag(name))).filter(|holder| holder != id);
                if let Some(by) = by {
                    return Err(ProductError::NameTaken { name: name.clone(), by: by.to_string() });
                }
                check_components(bom)?;
            }
            ProductCommand::ChangeBom { bom } if self.defined && !self.retired => check_components(bom)?,
            ProductCommand::Retire if self.defined && !self.retired => {
                let tag = Tag::new(COMPONENT_TAG, id);
                if let Some(by) = users(id.as_str(), seen.tagged(&tag)).into_iter().find(|user| user != id) {
                    return Err(ProductError::InUse { by: by.to_string() });
                }
            }
            _ => {}
        }
        self.handle(command).map(Decision::own)
    }

    fn tags(&self, _id: &AggregateId, event: &ProductEvent) -> Vec<Tag> {
        match event {
            ProductEvent::ProductDefined { name, bom } => std::iter::once(name_tag(name))
                .chain(bom.iter().filter_map(|l| component_tag(l.sku.as_str())))
                .collect(),
            ProductEvent::BomChanged { bom } => {
                let skus: BTreeSet<&str> = self.bom.iter().chain(bom).map(|line| line.sku.as_str()).collect();
                skus.into_iter().filter_map(component_tag).collect()
            }
            ProductEvent::ProductRetired {} => std::iter::once(name_tag(&self.name))
                .chain(self.bom.iter().filter_map(|l| component_tag(l.sku.as_str())))
                .collect(),
        }
    }

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
