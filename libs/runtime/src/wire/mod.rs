//! The wire contract of a jetsource application (`docs/contracts/nats.md`), in one place:
//! the subjects and their builders, the header names, the request and reply types, and one typed
//! client ([`Client`]) that the HTTP edge, the saga, the CLI, the benchmarks and the tests use.

mod client;
pub mod reply;

pub use client::{CallError, Client, CommandReply, CommandRequest};
pub use reply::{ErrorBody, read_reply};

/// What command ids and idempotency keys look like: 1–128 of `A-Z a-z 0-9 - _ . : @ =`, no dot
/// at either end and no two in a row.
pub const COMMAND_ID_PATTERN: &str = r"^[A-Za-z0-9_:@=-](?:[A-Za-z0-9_:@=-]|\.(?=[A-Za-z0-9_:@=-])){0,127}$";

/// Header names.
pub mod header {
    /// A client's idempotency key: the command id.
    pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";
    /// Pins the expected dense version of the aggregate.
    pub const EXPECTED_VERSION: &str = "Expected-Version";
    /// Who asks (the edge sets it from the authenticated caller).
    pub const ACTOR: &str = "Actor";
    /// The conversation a command belongs to (defaults to the command id).
    pub const CORRELATION_ID: &str = "Correlation-Id";
    /// What caused the command (an event id).
    pub const CAUSATION_ID: &str = "Causation-Id";
    /// On a reply: it is the replay of an earlier outcome.
    pub const REPLAYED: &str = "Idempotent-Replayed";
    /// On a query: answer once the view reflects this stream sequence.
    pub const MIN_SEQ: &str = "Min-Seq";
    /// On an error reply: the HTTP-like error number.
    pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";
    /// On an error reply: the error text.
    pub const SERVICE_ERROR: &str = "Nats-Service-Error";
}

/// Subjects and their builders.
pub mod subject {
    /// Every command: the router's subscription.
    pub const COMMANDS: &str = "cmd.>";
    /// Every query: the projector's subscription.
    pub const QUERIES: &str = "qry.>";
    /// The projector's operations.
    pub const PROJECTOR: &str = "projector.>";
    /// The projector's status.
    pub const PROJECTOR_STATUS: &str = "projector.status";
    /// Queries over the shipped logs.
    pub const LOGBOOK_QUERY: &str = "logbook.query";
    /// Every notification.
    pub const NOTIFICATIONS: &str = "notify.>";
    /// NATS micro-service discovery of every service.
    pub const SRV_PING: &str = "$SRV.PING";
    /// Every subject of NATS micro-service discovery.
    pub const SRV: &str = "$SRV.>";

    /// `cmd.<type>.<id>.<command>`.
    pub fn command(aggregate_type: &str, id: &str, command: &str) -> String {
        format!("cmd.{aggregate_type}.{id}.{command}")
    }

    /// `cmd.<type>.>`: every command of one aggregate type.
    pub fn commands_of(aggregate_type: &str) -> String {
        format!("cmd.{aggregate_type}.>")
    }

    /// `qry.<view>.<key>`, or `qry.<view>` for a listing.
    pub fn query(view: &str, key: Option<&str>) -> String {
        match key {
            Some(key) => format!("qry.{view}.{key}"),
            None => format!("qry.{view}"),
        }
    }

    /// `projector.<operation>.<view>`.
    pub fn projector(operation: &str, view: &str) -> String {
        format!("projector.{operation}.{view}")
    }

    /// `notify.<command_id>`.
    pub fn notify(command_id: &str) -> String {
        format!("notify.{command_id}")
    }

    /// `$SRV.PING.<service>`.
    pub fn srv_ping(service: &str) -> String {
        format!("$SRV.PING.{service}")
    }

    /// The three tokens after `cmd.` of a command subject: type, id, command (none of them
    /// empty).
    pub fn parse_command(subject: &str) -> Option<(&str, &str, &str)> {
        let mut tokens = subject.strip_prefix("cmd.")?.splitn(4, '.');
        match (tokens.next(), tokens.next(), tokens.next(), tokens.next()) {
            (Some(t), Some(id), Some(c), None) if !t.is_empty() && !id.is_empty() && !c.is_empty() => Some((t, id, c)),
            _ => None,
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn subjects_are_built_and_read_back() {
            assert_eq!(command("stock", "bolt@main", "receive"), "cmd.stock.bolt@main.receive");
            assert_eq!(parse_command("cmd.stock.bolt@main.receive"), Some(("stock", "bolt@main", "receive")));
            assert_eq!(parse_command("cmd..."), None, "empty tokens (found by the fuzz suite)");
            assert_eq!(parse_command("cmd.stock.a.b.c"), None);
            assert_eq!(parse_command("cmd.stock"), None);
            assert_eq!(query("stock", None), "qry.stock");
            assert_eq!(query("stock", Some("bolt@main")), "qry.stock.bolt@main");
            assert_eq!(notify("c1"), "notify.c1");
        }
    }
}
