//! Decisions beyond one aggregate: the other aggregates a command reads and writes, and the
//! tagged events it reads, each appended on condition that nothing it read has changed
//! (docs/contracts/consistency.md, ADR 18).
//!
//! A command's [`Scope`] names what it needs besides its own aggregate. The framework loads
//! those aggregates, reads the events under each [`Tag`], and hands them to
//! [`Aggregate::decide`](crate::Aggregate::decide) as [`Seen`](crate::Seen). The [`Decision`] may record
//! events on several aggregates; all of them are appended in one atomic batch, with an
//! expectation on every aggregate and every tag that was read, so a concurrent change to any
//! of them is a conflict: the framework reloads and decides again.

use std::fmt;

use crate::id::AggregateId;

/// A tag: a name and a value, both subject tokens, that groups events across aggregates
/// (`product-name` = a name's key, `component` = a SKU). Events are tagged by
/// [`Aggregate::tags`](crate::Aggregate::tags); a decision reads a tag's events and appends on
/// condition that none was added since.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag {
    name: &'static str,
    value: String,
}

impl Tag {
    /// The tag `name` = `value`. The name is a constant of lower-case letters, digits and `-`;
    /// the value is an [`AggregateId`]-like token (`[A-Za-z0-9_@-]`, 1–128 characters), so
    /// user input can never widen the subject it becomes.
    pub fn new(name: &'static str, value: &AggregateId) -> Self {
        debug_assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "tag names are lower-case letters, digits and -"
        );
        Self { name, value: value.as_str().to_owned() }
    }

    /// The tag `name` for a free text, compared case-insensitively (a product name): the
    /// value is a 64-bit hash of the text trimmed and lower-cased. Two texts may share a hash;
    /// a decision that reads the tag compares the texts themselves (see [`text_key`]).
    pub fn of_text(name: &'static str, text: &str) -> Self {
        let id = AggregateId::new(format!("{:016x}", fnv1a(text_key(text).as_bytes())))
            .unwrap_or_else(|_| unreachable!("hex is an id"));
        Self::new(name, &id)
    }

    /// The tag's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The tag's value.
    pub fn value(&self) -> &str {
        &self.value
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

/// A text as it is compared for uniqueness: trimmed, lower-cased.
pub fn text_key(text: &str) -> String {
    text.trim().to_lowercase()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// What a command needs besides its own aggregate: other aggregates of the same type, and
/// tags whose events it reads. The default, empty scope is the single-aggregate command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Other aggregates the decision reads (and may write).
    pub aggregates: Vec<AggregateId>,
    /// Tags whose events the decision reads.
    pub tags: Vec<Tag>,
}

impl Scope {
    /// Also reads (and may write) aggregate `id`.
    #[must_use]
    pub fn aggregate(mut self, id: AggregateId) -> Self {
        if !self.aggregates.contains(&id) {
            self.aggregates.push(id);
        }
        self
    }

    /// Also reads the events tagged `tag`.
    #[must_use]
    pub fn tag(mut self, tag: Tag) -> Self {
        if !self.tags.contains(&tag) {
            self.tags.push(tag);
        }
        self
    }

    /// True for the single-aggregate command.
    pub fn is_empty(&self) -> bool {
        self.aggregates.is_empty() && self.tags.is_empty()
    }
}

/// One event read under a tag, with the aggregate that recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct Tagged<E> {
    /// The aggregate that recorded it.
    pub aggregate_id: AggregateId,
    /// The event.
    pub event: E,
}

/// What a decision records: events on the aggregate the command was sent to, and on others of
/// its scope. An empty decision records nothing and answers success.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<E> {
    /// Events of the aggregate the command was sent to.
    pub events: Vec<E>,
    /// Events of other aggregates, each once.
    pub others: Vec<(AggregateId, Vec<E>)>,
}

impl<E> Decision<E> {
    /// Events on the command's own aggregate only.
    pub fn own(events: Vec<E>) -> Self {
        Self { events, others: Vec::new() }
    }

    /// Also records `events` on aggregate `id`.
    #[must_use]
    pub fn and(mut self, id: AggregateId, events: Vec<E>) -> Self {
        match self.others.iter_mut().find(|(other, _)| *other == id) {
            Some((_, existing)) => existing.extend(events),
            None => self.others.push((id, events)),
        }
        self
    }

    /// True when it records nothing.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.others.iter().all(|(_, events)| events.is_empty())
    }
}

impl<E> From<Vec<E>> for Decision<E> {
    fn from(events: Vec<E>) -> Self {
        Self::own(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_tags_ignore_case_and_surrounding_blanks() {
        assert_eq!(Tag::of_text("product-name", " Widget "), Tag::of_text("product-name", "wIDGET"));
        assert_ne!(Tag::of_text("product-name", "Widget"), Tag::of_text("product-name", "Widgets"));
        assert_eq!(Tag::of_text("product-name", "Widget").value().len(), 16);
    }

    #[test]
    fn a_decision_merges_events_of_one_other_aggregate() {
        let b = AggregateId::new("b").unwrap();
        let decision = Decision::own(vec![1]).and(b.clone(), vec![2]).and(b.clone(), vec![3]);
        assert_eq!(decision.others, vec![(b, vec![2, 3])]);
        assert!(!decision.is_empty());
        assert!(Decision::<u8>::own(Vec::new()).is_empty());
    }
}
