//! The stream settings the provisioner manages: how each is shown, whether changing it can
//! lose data or protection, and how it is copied from the declaration.

use async_nats::jetstream::stream::{Compression, Config, DiscardPolicy};

use super::duration::format_duration;

/// How risky changing a setting in place is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Risk {
    /// Adds room or protection; applied without asking.
    Safe,
    /// May drop data or remove a protection; applied only when forced.
    Destructive,
    /// The server cannot change it in place; never applied.
    Immutable,
}

/// A managed stream setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Subjects,
    Sources,
    Compression,
    Description,
    Retention,
    Storage,
    Discard,
    MaxAge,
    MaxBytes,
    MaxMsgs,
    MaxMsgsPerSubject,
    DuplicateWindow,
    AllowDirect,
    AllowAtomic,
    AllowRollup,
    AllowMsgTtl,
    AllowMsgSchedules,
    DenyDelete,
    DenyPurge,
    Replicas,
}

/// Every setting of a plain stream.
pub(crate) const STREAM_FIELDS: &[Field] = &[
    Field::Subjects,
    Field::Sources,
    Field::Compression,
    Field::Description,
    Field::Retention,
    Field::Storage,
    Field::Discard,
    Field::MaxAge,
    Field::MaxBytes,
    Field::MaxMsgs,
    Field::MaxMsgsPerSubject,
    Field::DuplicateWindow,
    Field::AllowDirect,
    Field::AllowAtomic,
    Field::AllowRollup,
    Field::AllowMsgTtl,
    Field::AllowMsgSchedules,
    Field::DenyDelete,
    Field::DenyPurge,
    Field::Replicas,
];

/// The settings a KV declaration controls (the rest is fixed by the KV layout).
pub(crate) const KV_FIELDS: &[Field] =
    &[Field::Description, Field::Storage, Field::MaxAge, Field::MaxBytes, Field::MaxMsgsPerSubject, Field::Replicas];

/// A limit where zero or a negative number means "none".
fn limit(n: i64) -> Option<i64> {
    (n > 0).then_some(n)
}

/// Lowering a limit (or setting one where there was none) can drop data.
fn limit_risk(current: Option<i64>, desired: Option<i64>) -> Risk {
    match (current, desired) {
        (_, None) => Risk::Safe,
        (None, Some(_)) => Risk::Destructive,
        (Some(c), Some(d)) if d < c => Risk::Destructive,
        _ => Risk::Safe,
    }
}

/// Turning a protection off (or a capability we rely on off) is destructive.
fn flag_risk(desired: bool) -> Risk {
    if desired { Risk::Safe } else { Risk::Destructive }
}

fn show_limit(n: Option<i64>) -> String {
    n.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}

impl Field {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Field::Subjects => "subjects",
            Field::Sources => "sources",
            Field::Compression => "compression",
            Field::Description => "description",
            Field::Retention => "retention",
            Field::Storage => "storage",
            Field::Discard => "discard",
            Field::MaxAge => "max_age",
            Field::MaxBytes => "max_bytes",
            Field::MaxMsgs => "max_msgs",
            Field::MaxMsgsPerSubject => "max_msgs_per_subject",
            Field::DuplicateWindow => "duplicate_window",
            Field::AllowDirect => "allow_direct",
            Field::AllowAtomic => "allow_atomic",
            Field::AllowRollup => "allow_rollup",
            Field::AllowMsgTtl => "allow_msg_ttl",
            Field::AllowMsgSchedules => "allow_msg_schedules",
            Field::DenyDelete => "deny_delete",
            Field::DenyPurge => "deny_purge",
            Field::Replicas => "replicas",
        }
    }

    pub(crate) fn show(self, c: &Config) -> String {
        match self {
            Field::Subjects => {
                let mut subjects = c.subjects.clone();
                subjects.sort();
                subjects.join(",")
            }
            Field::Sources => {
                let mut names: Vec<&str> = c.sources.iter().flatten().map(|s| s.name.as_str()).collect();
                names.sort_unstable();
                names.join(",")
            }
            Field::Compression => match c.compression {
                Some(Compression::S2) => "s2".into(),
                _ => "none".into(),
            },
            Field::Description => c.description.clone().filter(|d| !d.is_empty()).unwrap_or_default(),
            Field::Retention => format!("{:?}", c.retention).to_lowercase(),
            Field::Storage => format!("{:?}", c.storage).to_lowercase(),
            Field::Discard => format!("{:?}", c.discard).to_lowercase(),
            Field::MaxAge if c.max_age.is_zero() => "unlimited".into(),
            Field::MaxAge => format_duration(c.max_age),
            Field::MaxBytes => show_limit(limit(c.max_bytes)),
            Field::MaxMsgs => show_limit(limit(c.max_messages)),
            Field::MaxMsgsPerSubject => show_limit(limit(c.max_messages_per_subject)),
            Field::DuplicateWindow => format_duration(c.duplicate_window),
            Field::AllowDirect => c.allow_direct.to_string(),
            Field::AllowAtomic => c.allow_atomic_publish.to_string(),
            Field::AllowRollup => c.allow_rollup.to_string(),
            Field::AllowMsgTtl => c.allow_message_ttl.to_string(),
            Field::AllowMsgSchedules => c.allow_message_schedules.to_string(),
            Field::DenyDelete => c.deny_delete.to_string(),
            Field::DenyPurge => c.deny_purge.to_string(),
            Field::Replicas => c.num_replicas.max(1).to_string(),
        }
    }

    /// The risk of moving from `current` to `desired`.
    pub(crate) fn risk(self, current: &Config, desired: &Config) -> Risk {
        match self {
            Field::Subjects => {
                if current.subjects.iter().all(|s| desired.subjects.contains(s)) {
                    Risk::Safe
                } else {
                    Risk::Destructive
                }
            }
            // A source removed stops the copy (the archive would fall behind for good).
            Field::Sources => {
                let names = |c: &Config| c.sources.iter().flatten().map(|s| s.name.clone()).collect::<Vec<_>>();
                let desired = names(desired);
                if names(current).iter().all(|s| desired.contains(s)) { Risk::Safe } else { Risk::Destructive }
            }
            // The server recompresses blocks as they are written; nothing is lost either way.
            Field::Description | Field::DuplicateWindow | Field::Compression => Risk::Safe,
            Field::Retention | Field::Storage => Risk::Immutable,
            Field::Discard => match desired.discard {
                DiscardPolicy::New => Risk::Safe,
                _ => Risk::Destructive,
            },
            Field::MaxAge => {
                let age = |c: &Config| (!c.max_age.is_zero()).then_some(c.max_age.as_secs() as i64);
                limit_risk(age(current), age(desired))
            }
            Field::MaxBytes => limit_risk(limit(current.max_bytes), limit(desired.max_bytes)),
            Field::MaxMsgs => limit_risk(limit(current.max_messages), limit(desired.max_messages)),
            Field::MaxMsgsPerSubject => {
                limit_risk(limit(current.max_messages_per_subject), limit(desired.max_messages_per_subject))
            }
            Field::AllowDirect
            | Field::AllowAtomic
            | Field::AllowMsgSchedules
            | Field::DenyDelete
            | Field::DenyPurge => flag_risk(self.flag(desired)),
            // Rollups and TTLs let messages disappear; TTL can never be turned off again.
            Field::AllowRollup | Field::AllowMsgTtl => flag_risk(!self.flag(desired)),
            Field::Replicas => {
                if desired.num_replicas >= current.num_replicas {
                    Risk::Safe
                } else {
                    Risk::Destructive
                }
            }
        }
    }

    fn flag(self, c: &Config) -> bool {
        match self {
            Field::AllowDirect => c.allow_direct,
            Field::AllowAtomic => c.allow_atomic_publish,
            Field::AllowRollup => c.allow_rollup,
            Field::AllowMsgTtl => c.allow_message_ttl,
            Field::AllowMsgSchedules => c.allow_message_schedules,
            Field::DenyDelete => c.deny_delete,
            Field::DenyPurge => c.deny_purge,
            _ => false,
        }
    }

    /// Copies this setting from `from` into `to`.
    pub(crate) fn copy(self, from: &Config, to: &mut Config) {
        match self {
            Field::Subjects => to.subjects = from.subjects.clone(),
            Field::Sources => to.sources = from.sources.clone(),
            Field::Compression => to.compression = from.compression.clone(),
            Field::Description => to.description = from.description.clone(),
            Field::Retention => to.retention = from.retention,
            Field::Storage => to.storage = from.storage,
            Field::Discard => to.discard = from.discard,
            Field::MaxAge => to.max_age = from.max_age,
            Field::MaxBytes => to.max_bytes = from.max_bytes,
            Field::MaxMsgs => to.max_messages = from.max_messages,
            Field::MaxMsgsPerSubject => to.max_messages_per_subject = from.max_messages_per_subject,
            Field::DuplicateWindow => to.duplicate_window = from.duplicate_window,
            Field::AllowDirect => to.allow_direct = from.allow_direct,
            Field::AllowAtomic => to.allow_atomic_publish = from.allow_atomic_publish,
            Field::AllowRollup => to.allow_rollup = from.allow_rollup,
            Field::AllowMsgTtl => to.allow_message_ttl = from.allow_message_ttl,
            Field::AllowMsgSchedules => to.allow_message_schedules = from.allow_message_schedules,
            Field::DenyDelete => to.deny_delete = from.deny_delete,
            Field::DenyPurge => to.deny_purge = from.deny_purge,
            Field::Replicas => to.num_replicas = from.num_replicas,
        }
    }
}
