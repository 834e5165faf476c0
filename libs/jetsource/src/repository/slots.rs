//! One lock per aggregate in this process, holding the cached state. Commands on the same
//! aggregate run one after another here (no self-inflicted OCC conflicts); across processes
//! OCC keeps them correct.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::id::AggregateId;

/// The lock of one aggregate with its cached state.
pub(crate) type Slot<T> = Arc<tokio::sync::Mutex<Option<T>>>;

pub(crate) struct Slots<T> {
    map: Mutex<HashMap<AggregateId, Slot<T>>>,
    capacity: usize,
}

impl<T> Slots<T> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self { map: Mutex::new(HashMap::new()), capacity: capacity.max(64) }
    }

    /// The slot of `id`, created on first use. Past capacity, a tenth of the idle slots (and
    /// the states they cache) are dropped.
    pub(crate) fn get(&self, id: &AggregateId) -> Slot<T> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = map.get(id) {
            return Arc::clone(slot);
        }
        if map.len() >= self.capacity {
            let idle: Vec<AggregateId> = map
                .iter()
                .filter(|(_, slot)| Arc::strong_count(slot) == 1)
                .take(self.capacity / 10 + 1)
                .map(|(id, _)| id.clone())
                .collect();
            for id in idle {
                map.remove(&id);
            }
        }
        Arc::clone(map.entry(id.clone()).or_default())
    }

    /// Forgets every cached state (the locks stay correct: in-use slots are kept).
    pub(crate) fn clear_idle(&self) {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|_, slot| Arc::strong_count(slot) > 1);
    }
}
