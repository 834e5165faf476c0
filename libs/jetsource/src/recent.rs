//! The last commands an aggregate recorded, so a retried command answers its first outcome
//! instead of running again.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// One recorded event as named in command replies: `{"type", "version", "seq"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRef {
    /// Event name (`StockReserved`).
    #[serde(rename = "type")]
    pub event_type: String,
    /// Dense aggregate version after the event.
    pub version: u64,
    /// Stream sequence.
    pub seq: u64,
}

/// The events one command recorded. A command's events are contiguous in the stream (one
/// atomic batch) and in the aggregate's versions, so the record keeps the first of each and
/// the event names as runs: small in a snapshot even for a command of a thousand events.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandRecord {
    /// The command id.
    #[serde(rename = "id")]
    pub command_id: String,
    /// Version after its first event.
    #[serde(rename = "v")]
    pub first_version: u64,
    /// Stream sequence of its first event.
    #[serde(rename = "s")]
    pub first_seq: u64,
    /// Event names in order, as (name, how many in a row).
    #[serde(rename = "t")]
    pub types: Vec<(String, u32)>,
}

impl CommandRecord {
    /// How many events the command recorded.
    pub fn len(&self) -> u64 {
        self.types.iter().map(|(_, n)| u64::from(*n)).sum()
    }

    /// True when it recorded none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Version after its last event.
    pub fn last_version(&self) -> u64 {
        self.first_version + self.len().saturating_sub(1)
    }

    /// Stream sequence of its last event.
    pub fn last_seq(&self) -> u64 {
        self.first_seq + self.len().saturating_sub(1)
    }

    /// Its events, as command replies list them.
    pub fn events(&self) -> Vec<EventRef> {
        let mut out = Vec::with_capacity(self.len() as usize);
        for (name, count) in &self.types {
            for _ in 0..*count {
                let offset = out.len() as u64;
                out.push(EventRef {
                    event_type: name.clone(),
                    version: self.first_version + offset,
                    seq: self.first_seq + offset,
                });
            }
        }
        out
    }

    fn push(&mut self, event_type: &str) {
        match self.types.last_mut() {
            Some((name, count)) if name == event_type => *count += 1,
            _ => self.types.push((event_type.to_owned(), 1)),
        }
    }
}

/// A bounded list of the most recent commands of one aggregate, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecentCommands(VecDeque<CommandRecord>);

impl RecentCommands {
    /// Notes that `command_id` recorded an event, keeping at most `capacity` commands. Events
    /// without a command id (written by another client) are not remembered.
    pub fn record(&mut self, command_id: &str, event_type: &str, version: u64, seq: u64, capacity: usize) {
        if command_id.is_empty() {
            return;
        }
        match self.0.back_mut() {
            Some(last) if last.command_id == command_id && last.last_seq() + 1 == seq => last.push(event_type),
            _ => {
                let mut record = CommandRecord {
                    command_id: command_id.to_owned(),
                    first_version: version,
                    first_seq: seq,
                    types: Vec::new(),
                };
                record.push(event_type);
                self.0.push_back(record);
                while self.0.len() > capacity.max(1) {
                    self.0.pop_front();
                }
            }
        }
    }

    /// The record of `command_id`, if it is among the recent ones.
    pub fn find(&self, command_id: &str) -> Option<&CommandRecord> {
        self.0.iter().rev().find(|r| r.command_id == command_id)
    }

    /// How many commands are remembered.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when none are.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_contiguous_events_of_one_command_and_forgets_the_oldest() {
        let mut recent = RecentCommands::default();
        recent.record("a", "E", 1, 10, 2);
        recent.record("a", "E", 2, 11, 2);
        recent.record("b", "F", 3, 15, 2);
        recent.record("c", "E", 4, 20, 2);
        assert_eq!(recent.len(), 2);
        assert!(recent.find("a").is_none());
        let c = recent.find("c").unwrap();
        assert_eq!(c.events(), vec![EventRef { event_type: "E".into(), version: 4, seq: 20 }]);
    }

    #[test]
    fn a_large_command_is_stored_as_runs() {
        let mut recent = RecentCommands::default();
        for i in 0..1000 {
            recent.record("big", if i < 999 { "Counted" } else { "Closed" }, i + 1, i + 100, 8);
        }
        let record = recent.find("big").unwrap();
        assert_eq!(record.types, vec![("Counted".to_owned(), 999), ("Closed".to_owned(), 1)]);
        assert_eq!((record.last_version(), record.last_seq()), (1000, 1099));
        assert!(serde_json::to_string(&recent).unwrap().len() < 100);
    }

    #[test]
    fn events_without_a_command_id_or_out_of_sequence_start_no_shared_record() {
        let mut recent = RecentCommands::default();
        recent.record("", "E", 1, 1, 8);
        recent.record("x", "E", 2, 5, 8);
        recent.record("x", "E", 3, 9, 8);
        assert_eq!(recent.len(), 2, "a gap in the sequence means another record");
    }
}
