//! Idempotent provisioning: create what is missing, leave what matches, report every
//! difference, and change nothing that could lose data unless forced.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, IntoConsumerConfig, pull};
use async_nats::jetstream::stream::{
    Compression as StreamCompression, Config, DiscardPolicy, RetentionPolicy, Source, StorageType,
};
use async_nats::jetstream::{self, kv};
use thiserror::Error;

use super::fields::{Field, KV_FIELDS, Risk, STREAM_FIELDS};
use super::{
    Compression, ConsumerSpec, DeliverFrom, Discard, KvSpec, Retention, Storage, StreamSpec, Topology, parse_duration,
};

const STREAM_NOT_FOUND: u64 = 10059;

/// How to provision.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProvisionOptions {
    /// Replicas for every stream and bucket, overriding the declaration (1 dev, 3 prod).
    pub replicas: Option<usize>,
    /// Apply destructive changes too (never the immutable ones).
    pub force: bool,
    /// Report only; change nothing.
    pub dry_run: bool,
}

/// What happened to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It did not exist and was created (or would be, in a dry run).
    Created,
    /// It matches the declaration.
    Unchanged,
    /// Every difference was applied (or would be).
    Updated,
    /// Some differences were left as they are: destructive without `force`, or immutable.
    Drifted,
}

/// One setting that differs from the declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// Setting name (`max_age`).
    pub field: &'static str,
    /// Value on the server.
    pub current: String,
    /// Declared value.
    pub desired: String,
    /// How risky the change is.
    pub risk: Risk,
    /// Whether it was applied (or would be, in a dry run).
    pub applied: bool,
}

/// One resource in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// `stream`, `kv` or `consumer`.
    pub kind: &'static str,
    /// Its name (`EVENTS`, `snapshots`, `EVENTS/saga`).
    pub name: String,
    /// What happened.
    pub action: Action,
    /// The differences found.
    pub differences: Vec<Difference>,
}

/// The outcome of a provisioning run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One item per declared resource, in declaration order.
    pub items: Vec<Item>,
    /// True when nothing was changed on purpose.
    pub dry_run: bool,
}

impl Report {
    /// True when some declared setting is not in place.
    pub fn has_drift(&self) -> bool {
        self.items.iter().any(|i| i.action == Action::Drifted)
    }
}

/// Why provisioning stopped.
#[derive(Debug, Error)]
pub enum ProvisionError {
    /// JetStream did not answer.
    #[error("JetStream unavailable while provisioning {resource}: {reason}")]
    Unavailable {
        /// The resource being handled.
        resource: String,
        /// What the client said.
        reason: String,
    },
    /// The server refused a create or update.
    #[error("the server refused {action} of {resource}: {reason}")]
    Refused {
        /// `create` or `update`.
        action: &'static str,
        /// The resource.
        resource: String,
        /// The server's message.
        reason: String,
    },
}

/// Provisions `topology` on the server behind `js`.
///
/// # Errors
/// [`ProvisionError`] when JetStream does not answer or refuses a change.
pub async fn provision(
    js: &jetstream::Context,
    topology: &Topology,
    options: ProvisionOptions,
) -> Result<Report, ProvisionError> {
    let mut report = Report { items: Vec::new(), dry_run: options.dry_run };
    for spec in &topology.streams {
        let desired = stream_config(spec, options.replicas);
        report.items.push(
            reconcile_stream(js, "stream", &spec.name, desired, STREAM_FIELDS, options, |js, cfg| async move {
                js.create_stream(cfg).await.map(drop).map_err(|e| e.to_string())
            })
            .await?,
        );
    }
    for spec in &topology.buckets {
        let desired = kv_stream_config(spec, options.replicas);
        let kv_config = kv_config(spec, options.replicas);
        report.items.push(
            reconcile_stream(js, "kv", &spec.bucket, desired, KV_FIELDS, options, |js, _| async move {
                js.create_key_value(kv_config).await.map(drop).map_err(|e| e.to_string())
            })
            .await?,
        );
    }
    for spec in &topology.consumers {
        report.items.push(reconcile_consumer(js, spec, options).await?);
    }
    Ok(report)
}

async fn reconcile_stream<F, Fut>(
    js: &jetstream::Context,
    kind: &'static str,
    name: &str,
    desired: Config,
    fields: &[Field],
    options: ProvisionOptions,
    create: F,
) -> Result<Item, ProvisionError>
where
    F: FnOnce(jetstream::Context, Config) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let resource = format!("{kind} {name}");
    let current = match js.get_stream(&desired.name).await {
        Ok(stream) => stream.cached_info().config.clone(),
        Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j) if j.error_code().0 == STREAM_NOT_FOUND) =>
        {
            if !options.dry_run {
                create(js.clone(), desired).await.map_err(|reason| ProvisionError::Refused {
                    action: "create",
                    resource,
                    reason,
                })?;
            }
            return Ok(Item { kind, name: name.to_owned(), action: Action::Created, differences: Vec::new() });
        }
        Err(e) => return Err(ProvisionError::Unavailable { resource, reason: e.to_string() }),
    };
    let mut next = current.clone();
    let mut differences = Vec::new();
    for &field in fields {
        // An unset dedupe window means "the server's default".
        if field == Field::DuplicateWindow && desired.duplicate_window.is_zero() {
            continue;
        }
        let (now, want) = (field.show(&current), field.show(&desired));
        if now == want {
            continue;
        }
        let risk = field.risk(&current, &desired);
        let applied = match risk {
            Risk::Safe => true,
            Risk::Destructive => options.force,
            Risk::Immutable => false,
        };
        if applied {
            field.copy(&desired, &mut next);
        }
        differences.push(Difference { field: field.name(), current: now, desired: want, risk, applied });
    }
    let action = if differences.is_empty() {
        Action::Unchanged
    } else if differences.iter().all(|d| d.applied) {
        Action::Updated
    } else {
        Action::Drifted
    };
    if !options.dry_run && differences.iter().any(|d| d.applied) {
        js.update_stream(&next).await.map_err(|e| ProvisionError::Refused {
            action: "update",
            resource,
            reason: e.to_string(),
        })?;
    }
    Ok(Item { kind, name: name.to_owned(), action, differences })
}

async fn reconcile_consumer(
    js: &jetstream::Context,
    spec: &ConsumerSpec,
    options: ProvisionOptions,
) -> Result<Item, ProvisionError> {
    let name = format!("{}/{}", spec.stream, spec.durable);
    let resource = format!("consumer {name}");
    let unavailable = |reason: String| ProvisionError::Unavailable { resource: resource.clone(), reason };
    let desired = consumer_config(spec);
    let stream = match js.get_stream(&spec.stream).await {
        Ok(stream) => stream,
        // In a dry run the stream may be one that would be created first.
        Err(_) if options.dry_run => {
            return Ok(Item { kind: "consumer", name, action: Action::Created, differences: Vec::new() });
        }
        Err(e) => return Err(unavailable(e.to_string())),
    };
    let current = match stream.consumer_info(&spec.durable).await {
        Ok(info) => info.config.clone(),
        Err(e) if e.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => {
            if !options.dry_run {
                stream.create_consumer(desired).await.map_err(|e| ProvisionError::Refused {
                    action: "create",
                    resource: resource.clone(),
                    reason: e.to_string(),
                })?;
            }
            return Ok(Item { kind: "consumer", name, action: Action::Created, differences: Vec::new() });
        }
        Err(e) => return Err(unavailable(e.to_string())),
    };
    let mut differences = Vec::new();
    let mut diff = |field: &'static str, now: String, want: String, risk: Risk| {
        if now != want {
            let applied = risk == Risk::Safe || (risk == Risk::Destructive && options.force);
            differences.push(Difference { field, current: now, desired: want, risk, applied });
        }
    };
    let filters = |c: &jetstream::consumer::Config| {
        let mut f = c.filter_subjects.clone();
        if !c.filter_subject.is_empty() {
            f.push(c.filter_subject.clone());
        }
        f.sort();
        f.join(",")
    };
    diff("filter_subjects", filters(&current), filters(&desired.clone().into_consumer_config()), Risk::Destructive);
    diff("ack_wait", super::format_duration(current.ack_wait), super::format_duration(desired.ack_wait), Risk::Safe);
    diff("max_deliver", current.max_deliver.to_string(), desired.max_deliver.to_string(), Risk::Safe);
    diff("max_ack_pending", current.max_ack_pending.to_string(), desired.max_ack_pending.to_string(), Risk::Safe);
    let standby = |c: &jetstream::consumer::Config| {
        format!("{:?} {:?} {}", c.priority_policy, c.priority_groups, super::format_duration(c.priority_timeout))
    };
    diff("priority_policy", standby(&current), standby(&desired.clone().into_consumer_config()), Risk::Safe);
    let action = if differences.is_empty() {
        Action::Unchanged
    } else if differences.iter().all(|d| d.applied) {
        Action::Updated
    } else {
        Action::Drifted
    };
    if !options.dry_run && differences.iter().any(|d| d.applied) {
        let mut next = desired;
        if !differences.iter().any(|d| d.field == "filter_subjects" && d.applied) {
            next.filter_subject = current.filter_subject.clone();
            next.filter_subjects = current.filter_subjects.clone();
        }
        stream.update_consumer(next).await.map_err(|e| ProvisionError::Refused {
            action: "update",
            resource,
            reason: e.to_string(),
        })?;
    }
    Ok(Item { kind: "consumer", name, action, differences })
}

fn duration(text: Option<&String>) -> Duration {
    text.and_then(|t| parse_duration(t).ok()).unwrap_or_default()
}

fn storage(s: Storage) -> StorageType {
    match s {
        Storage::File => StorageType::File,
        Storage::Memory => StorageType::Memory,
    }
}

fn stream_config(spec: &StreamSpec, replicas: Option<usize>) -> Config {
    Config {
        name: spec.name.clone(),
        description: spec.description.clone(),
        subjects: spec.subjects.clone(),
        sources: (!spec.sources.is_empty())
            .then(|| spec.sources.iter().map(|name| Source { name: name.clone(), ..Default::default() }).collect()),
        compression: match spec.compression {
            Compression::S2 => Some(StreamCompression::S2),
            Compression::None => None,
        },
        storage: storage(spec.storage),
        retention: match spec.retention {
            Retention::Limits => RetentionPolicy::Limits,
            Retention::Interest => RetentionPolicy::Interest,
            Retention::Workqueue => RetentionPolicy::WorkQueue,
        },
        discard: match spec.discard {
            Discard::Old => DiscardPolicy::Old,
            Discard::New => DiscardPolicy::New,
        },
        max_age: duration(spec.max_age.as_ref()),
        max_bytes: spec.max_bytes.unwrap_or(-1),
        max_messages: spec.max_msgs.unwrap_or(-1),
        max_messages_per_subject: spec.max_msgs_per_subject.unwrap_or(-1),
        duplicate_window: duration(spec.duplicate_window.as_ref()),
        allow_direct: spec.allow_direct,
        allow_atomic_publish: spec.allow_atomic,
        allow_rollup: spec.allow_rollup,
        allow_message_ttl: spec.allow_msg_ttl,
        allow_message_schedules: spec.allow_msg_schedules,
        deny_delete: spec.deny_delete,
        deny_purge: spec.deny_purge,
        num_replicas: replicas.or(spec.replicas).unwrap_or(1),
        ..Default::default()
    }
}

fn kv_config(spec: &KvSpec, replicas: Option<usize>) -> kv::Config {
    kv::Config {
        bucket: spec.bucket.clone(),
        description: spec.description.clone().unwrap_or_default(),
        history: spec.history,
        max_age: duration(spec.max_age.as_ref()),
        max_bytes: spec.max_bytes.unwrap_or(-1),
        storage: storage(spec.storage),
        num_replicas: replicas.or(spec.replicas).unwrap_or(1),
        ..Default::default()
    }
}

/// The settings of a bucket's backing stream that its declaration controls.
fn kv_stream_config(spec: &KvSpec, replicas: Option<usize>) -> Config {
    Config {
        name: format!("KV_{}", spec.bucket),
        description: spec.description.clone(),
        storage: storage(spec.storage),
        max_age: duration(spec.max_age.as_ref()),
        max_bytes: spec.max_bytes.unwrap_or(-1),
        max_messages_per_subject: spec.history,
        num_replicas: replicas.or(spec.replicas).unwrap_or(1),
        ..Default::default()
    }
}

fn consumer_config(spec: &ConsumerSpec) -> pull::Config {
    let (filter_subject, filter_subjects) = match spec.filter_subjects.as_slice() {
        [one] => (one.clone(), Vec::new()),
        many => (String::new(), many.to_vec()),
    };
    let config = pull::Config {
        durable_name: Some(spec.durable.clone()),
        description: spec.description.clone(),
        filter_subject,
        filter_subjects,
        deliver_policy: match spec.deliver {
            DeliverFrom::All => DeliverPolicy::All,
            DeliverFrom::New => DeliverPolicy::New,
        },
        ack_policy: AckPolicy::Explicit,
        ack_wait: spec.ack_wait.as_ref().map_or(Duration::from_secs(30), |d| duration(Some(d))),
        max_deliver: spec.max_deliver.unwrap_or(-1),
        max_ack_pending: spec.max_ack_pending.unwrap_or(1000),
        ..Default::default()
    };
    if spec.shared { config } else { crate::consume::standby(config) }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.items.iter().map(|i| i.kind.len() + i.name.len() + 1).max().unwrap_or(0);
        for item in &self.items {
            let label = format!("{} {}", item.kind, item.name);
            let verb = match (item.action, self.dry_run) {
                (Action::Created, false) => "created",
                (Action::Created, true) => "would create",
                (Action::Unchanged, _) => "unchanged",
                (Action::Updated, false) => "updated",
                (Action::Updated, true) => "would update",
                (Action::Drifted, _) => "differs",
            };
            writeln!(f, "{label:<width$}  {verb}")?;
            for d in &item.differences {
                let note = match (d.risk, d.applied) {
                    (_, true) if self.dry_run => "would apply",
                    (_, true) => "applied",
                    (Risk::Destructive, false) => "left as is: could lose data; rerun with --force",
                    (Risk::Immutable, false) => "left as is: cannot change in place",
                    (Risk::Safe, false) => "left as is",
                };
                writeln!(f, "{:width$}    {}: {} -> {} ({note})", "", d.field, d.current, d.desired)?;
            }
        }
        Ok(())
    }
}
