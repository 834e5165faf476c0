//! A minimal aggregate for the core benchmarks.

use jetsource::{Aggregate, DomainError, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meter {
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum MeterEvent {
    Counted { qty: u64, source: String },
}

impl DomainEvent for MeterEvent {
    const SCHEMAS: &'static [(&'static str, u32)] = &[("Counted", 1)];
    fn event_type(&self) -> &'static str {
        "Counted"
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

impl DomainError for Never {
    fn reason(&self) -> &'static str {
        "never"
    }
}

impl Aggregate for Meter {
    const TYPE: &'static str = "meter";
    type Command = Vec<u64>;
    type Event = MeterEvent;
    type Error = Never;

    fn handle(&self, qtys: Vec<u64>) -> Result<Vec<MeterEvent>, Never> {
        Ok(qtys.into_iter().map(|qty| MeterEvent::Counted { qty, source: "bench".into() }).collect())
    }

    fn apply(&mut self, MeterEvent::Counted { qty, .. }: &MeterEvent) {
        self.total += qty;
    }
}
