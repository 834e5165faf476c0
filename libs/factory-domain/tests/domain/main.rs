//! Given/when/then for every command of the factory's aggregates, each rejection included.

mod order;
mod product;
mod stock;

use factory_domain::{BomLine, Qty, Sku};

pub fn qty(n: u64) -> Qty {
    Qty::new(n).unwrap()
}

pub fn line(sku: &str, n: u64) -> BomLine {
    BomLine { sku: Sku::new(sku).unwrap(), qty: qty(n) }
}
