//! The declared NATS topology: streams, KV buckets and durable consumers in one TOML file
//! (`nats/topology.toml`), provisioned idempotently by [`provision`] and turned into Kubernetes
//! resources by the app.

mod duration;
mod fields;
mod provision;

use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

pub use duration::{format_duration, parse_duration};
pub use fields::Risk;
pub use provision::{Action, Difference, Item, ProvisionError, ProvisionOptions, Report, provision};

/// Everything the application needs on the server.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Streams (`[[stream]]`).
    #[serde(default, rename = "stream")]
    pub streams: Vec<StreamSpec>,
    /// KV buckets (`[[kv]]`).
    #[serde(default, rename = "kv")]
    pub buckets: Vec<KvSpec>,
    /// Durable pull consumers (`[[consumer]]`).
    #[serde(default, rename = "consumer")]
    pub consumers: Vec<ConsumerSpec>,
    /// The archive tier and its clean-up service (`[archive]`), if the event log is bounded.
    #[serde(default)]
    pub archive: Option<ArchiveSpec>,
    /// What stays in the hot event stream, per aggregate type (`[[retention]]`); a type not
    /// listed keeps everything hot.
    #[serde(default, rename = "retention")]
    pub retention: Vec<RetentionSpec>,
}

/// The archive tier: a stream that sources the event stream and is never compacted, and how
/// often the archiver compacts the event stream against it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSpec {
    /// The archive stream (declared as a `[[stream]]` with `sources = [<events>]`).
    pub stream: String,
    /// The event stream it archives and the archiver compacts.
    pub events: String,
    /// How often the archiver runs (`10m`).
    pub every: String,
}

/// What a retention rule keeps hot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    /// Every event stays hot.
    #[default]
    All,
    /// Only the events after the aggregate's latest snapshot (and always its last event).
    SinceSnapshot,
    /// Everything while the aggregate is open; once its last event is one of `closed_by` and
    /// older than `closed_for`, only that last event.
    Closed,
}

/// The retention of one aggregate type's events in the hot stream. Whatever it drops from the
/// hot stream stays in the archive, and reads go there for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSpec {
    /// The aggregate type (`stock`).
    pub aggregate: String,
    /// What stays hot.
    pub keep: Keep,
    /// Why (shown by `archive status`).
    #[serde(default)]
    pub reason: Option<String>,
    /// For `closed`: the event names that close an aggregate (`OrderCompleted`).
    #[serde(default)]
    pub closed_by: Vec<String>,
    /// For `closed`: how long a closed aggregate stays hot (`30d`).
    #[serde(default)]
    pub closed_for: Option<String>,
    /// Events before the rule's horizon that stay hot as well (0: none), for readers that
    /// want the last few events without going to the archive.
    #[serde(default)]
    pub tail: u64,
}

/// Stream compression at rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// None.
    #[default]
    None,
    /// S2 (nats-server 2.10).
    S2,
}

/// Storage backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// On disk.
    #[default]
    File,
    /// In memory.
    Memory,
}

/// Retention policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retention {
    /// Keep until limits say otherwise.
    #[default]
    Limits,
    /// Keep while consumers are interested.
    Interest,
    /// Remove once acknowledged.
    Workqueue,
}

/// What happens at a limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Discard {
    /// Drop the oldest messages.
    #[default]
    Old,
    /// Refuse new messages (an event log must never lose old events).
    New,
}

/// One stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// Stream name.
    pub name: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Subjects it captures (none for a stream fed only by `sources`).
    #[serde(default)]
    pub subjects: Vec<String>,
    /// Streams it copies every message of, by JetStream sourcing (the archive).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Compression at rest.
    #[serde(default)]
    pub compression: Compression,
    /// File or memory.
    #[serde(default)]
    pub storage: Storage,
    /// Retention policy.
    #[serde(default)]
    pub retention: Retention,
    /// Discard policy.
    #[serde(default)]
    pub discard: Discard,
    /// Maximum age of messages (`24h`); none means forever.
    #[serde(default)]
    pub max_age: Option<String>,
    /// Maximum bytes; none means unlimited.
    #[serde(default)]
    pub max_bytes: Option<i64>,
    /// Maximum messages; none means unlimited.
    #[serde(default)]
    pub max_msgs: Option<i64>,
    /// Maximum messages per subject; none means unlimited.
    #[serde(default)]
    pub max_msgs_per_subject: Option<i64>,
    /// Message-id dedupe window (`2m`).
    #[serde(default)]
    pub duplicate_window: Option<String>,
    /// Serve Direct Get from any replica.
    #[serde(default)]
    pub allow_direct: bool,
    /// Allow atomic batch publish (ADR-50).
    #[serde(default)]
    pub allow_atomic: bool,
    /// Allow rollups (replacing a subject's history).
    #[serde(default)]
    pub allow_rollup: bool,
    /// Allow per-message TTL (irreversible).
    #[serde(default)]
    pub allow_msg_ttl: bool,
    /// Allow message schedules (nats-server 2.12, ADR-51; irreversible, implies rollups): the
    /// deadlines of process managers.
    #[serde(default)]
    pub allow_msg_schedules: bool,
    /// Refuse message deletion.
    #[serde(default)]
    pub deny_delete: bool,
    /// Refuse purges.
    #[serde(default)]
    pub deny_purge: bool,
    /// Replicas (1 dev, 3 prod); the provisioner may override it.
    #[serde(default)]
    pub replicas: Option<usize>,
}

/// One KV bucket.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KvSpec {
    /// Bucket name.
    pub bucket: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Values kept per key.
    #[serde(default = "one")]
    pub history: i64,
    /// Maximum age of values (`24h`); none means forever.
    #[serde(default)]
    pub max_age: Option<String>,
    /// Maximum bytes; none means unlimited.
    #[serde(default)]
    pub max_bytes: Option<i64>,
    /// File or memory.
    #[serde(default)]
    pub storage: Storage,
    /// Replicas; the provisioner may override it.
    #[serde(default)]
    pub replicas: Option<usize>,
}

fn one() -> i64 {
    1
}

/// Where a new consumer starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliverFrom {
    /// From the first message.
    #[default]
    All,
    /// Only messages stored after creation.
    New,
}

/// One durable pull consumer with explicit acks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerSpec {
    /// Stream it reads.
    pub stream: String,
    /// Durable name.
    pub durable: String,
    /// What it is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Subjects it receives (all of the stream when empty).
    #[serde(default)]
    pub filter_subjects: Vec<String>,
    /// Where it starts.
    #[serde(default)]
    pub deliver: DeliverFrom,
    /// How long a delivery may stay unacknowledged (`30s`).
    #[serde(default)]
    pub ack_wait: Option<String>,
    /// Deliveries before the server gives up on a message (none: unlimited).
    #[serde(default)]
    pub max_deliver: Option<i64>,
    /// Unacknowledged messages in flight.
    #[serde(default)]
    pub max_ack_pending: Option<i64>,
    /// Instances share its deliveries, in parallel and in no order across instances (work
    /// whose items are independent). By default one instance is active and the others wait on
    /// standby, and deliveries stay in stream order across a takeover.
    #[serde(default)]
    pub shared: bool,
}

/// Why a topology file could not be used.
#[derive(Debug, Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read topology {path}: {source}")]
    Read {
        /// The path tried.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid topology.
    #[error("invalid topology: {0}")]
    Invalid(String),
}

impl Topology {
    /// Parses a topology from TOML and checks it.
    ///
    /// # Errors
    /// [`TopologyError::Invalid`] with the parser's message or the failed check.
    pub fn parse(text: &str) -> Result<Self, TopologyError> {
        let topology: Topology = toml::from_str(text).map_err(|e| TopologyError::Invalid(e.to_string()))?;
        topology.check()?;
        Ok(topology)
    }

    /// Reads and parses a topology file.
    ///
    /// # Errors
    /// [`TopologyError`].
    pub fn load(path: &Path) -> Result<Self, TopologyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| TopologyError::Read { path: path.display().to_string(), source })?;
        Self::parse(&text)
    }

    /// The stream named `name`.
    pub fn stream(&self, name: &str) -> Option<&StreamSpec> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// The bucket named `bucket`.
    pub fn bucket(&self, bucket: &str) -> Option<&KvSpec> {
        self.buckets.iter().find(|b| b.bucket == bucket)
    }

    fn check(&self) -> Result<(), TopologyError> {
        let invalid = |m: String| Err(TopologyError::Invalid(m));
        for s in &self.streams {
            if s.name.is_empty() || (s.subjects.is_empty() && s.sources.is_empty()) {
                return invalid(format!("stream {:?} needs a name and subjects or sources", s.name));
            }
            if let Some(source) = s.sources.iter().find(|source| self.stream(source).is_none()) {
                return invalid(format!("stream {} sources undeclared stream {source}", s.name));
            }
            for d in [&s.max_age, &s.duplicate_window].into_iter().flatten() {
                parse_duration(d).map_err(|e| TopologyError::Invalid(format!("stream {}: {e}", s.name)))?;
            }
        }
        for b in &self.buckets {
            if !(1..=64).contains(&b.history) {
                return invalid(format!("kv {}: history must be 1..=64, not {}", b.bucket, b.history));
            }
            if let Some(d) = &b.max_age {
                parse_duration(d).map_err(|e| TopologyError::Invalid(format!("kv {}: {e}", b.bucket)))?;
            }
        }
        for c in &self.consumers {
            if self.stream(&c.stream).is_none() {
                return invalid(format!("consumer {} reads undeclared stream {}", c.durable, c.stream));
            }
            if let Some(d) = &c.ack_wait {
                parse_duration(d).map_err(|e| TopologyError::Invalid(format!("consumer {}: {e}", c.durable)))?;
            }
        }
        if let Some(a) = &self.archive {
            let sources = self.stream(&a.stream).map(|s| &s.sources);
            if !sources.is_some_and(|s| s.contains(&a.events)) {
                return invalid(format!(
                    "archive: stream {} must be declared with sources = [{:?}]",
                    a.stream, a.events
                ));
            }
            parse_duration(&a.every).map_err(|e| TopologyError::Invalid(format!("archive every: {e}")))?;
        }
        for r in &self.retention {
            if r.keep != Keep::All && self.archive.is_none() {
                return invalid(format!(
                    "retention of {}: only an [archive] lets events leave the hot stream",
                    r.aggregate
                ));
            }
            if r.keep == Keep::Closed && (r.closed_by.is_empty() || r.closed_for.is_none()) {
                return invalid(format!("retention of {}: keep = closed needs closed_by and closed_for", r.aggregate));
            }
            if let Some(d) = &r.closed_for {
                parse_duration(d).map_err(|e| TopologyError::Invalid(format!("retention of {}: {e}", r.aggregate)))?;
            }
        }
        Ok(())
    }

    /// The retention rule of an aggregate type (keep everything when none is declared).
    pub fn retention_of(&self, aggregate_type: &str) -> RetentionSpec {
        self.retention
            .iter()
            .find(|r| r.aggregate == aggregate_type)
            .cloned()
            .unwrap_or_else(|| RetentionSpec { aggregate: aggregate_type.to_owned(), ..Default::default() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_streams_buckets_and_consumers() {
        let topology = Topology::parse(
            r#"
            [[stream]]
            name = "EVENTS"
            subjects = ["evt.>"]
            discard = "new"
            duplicate_window = "2m"
            allow_direct = true

            [[kv]]
            bucket = "snapshots"

            [[consumer]]
            stream = "EVENTS"
            durable = "saga"
            filter_subjects = ["evt.order.>"]
            ack_wait = "30s"
            "#,
        )
        .unwrap();
        assert_eq!(topology.stream("EVENTS").unwrap().discard, Discard::New);
        assert_eq!(topology.bucket("snapshots").unwrap().history, 1);
        assert_eq!(topology.consumers[0].filter_subjects, ["evt.order.>"]);
    }

    #[test]
    fn refuses_unknown_fields_bad_durations_and_dangling_consumers() {
        assert!(Topology::parse("[[stream]]\nname='A'\nsubjects=['a']\nmax_agee='1h'").is_err());
        assert!(Topology::parse("[[stream]]\nname='A'\nsubjects=['a']\nmax_age='forever'").is_err());
        assert!(Topology::parse("[[consumer]]\nstream='NOPE'\ndurable='x'").is_err());
        assert!(Topology::parse("[[kv]]\nbucket='b'\nhistory=65").is_err());
    }

    #[test]
    fn an_archive_must_source_the_events_and_retention_needs_an_archive() {
        let events = "[[stream]]\nname='EVENTS'\nsubjects=['evt.>']\n";
        let archive = "[[stream]]\nname='ARCHIVE'\nsources=['EVENTS']\ncompression='s2'\n";
        let spec = "[archive]\nstream='ARCHIVE'\nevents='EVENTS'\nevery='10m'\n";
        let stock = "[[retention]]\naggregate='stock'\nkeep='since_snapshot'\n";
        let t = Topology::parse(&format!("{events}{archive}{spec}{stock}")).unwrap();
        assert_eq!(t.stream("ARCHIVE").unwrap().compression, Compression::S2);
        assert_eq!(t.retention_of("stock").keep, Keep::SinceSnapshot);
        assert_eq!(t.retention_of("product").keep, Keep::All);
        assert!(Topology::parse(&format!("{events}{stock}")).is_err(), "retention without an archive");
        assert!(Topology::parse(&format!("{events}[[stream]]\nname='ARCHIVE'\nsources=['EVENTS']\n[archive]\nstream='NOPE'\nevents='EVENTS'\nevery='1m'")).is_err());
        assert!(Topology::parse(&format!("{events}[[stream]]\nname='A'\nsources=['NOPE']\n")).is_err());
        let closed = "[[retention]]\naggregate='order'\nkeep='closed'\n";
        assert!(Topology::parse(&format!("{events}{archive}{spec}{closed}")).is_err(), "closed needs closed_by");
    }
}
