//! Prometheus metrics of an application's services, one registry per process, rendered at
//! `/metrics`, every name prefixed with the application's name (`<app>_commands_total`), beside
//! the standard `process_*` metrics (CPU, memory, file descriptors, start time). Names are the
//! contract of the dashboards and alert rules an application ships.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label values are `Cow`: the common ones are static strings and cost no allocation per
/// observation. Values must come from a bounded set (never raw user input).
pub type Labels<const N: usize> = [(&'static str, Cow<'static, str>); N];

fn label(value: impl Into<Cow<'static, str>>) -> Cow<'static, str> {
    value.into()
}

fn latency() -> Histogram {
    // 100 µs .. ~13 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

/// Every metric a process exposes.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// `<app>_commands_total{aggregate_type, command, code}`: answered commands by outcome
    /// (`succeeded`, `accepted`, or the error code).
    pub commands: Family<Labels<3>, Counter>,
    /// `<app>_command_duration_seconds{aggregate_type, command}`.
    pub command_seconds: Family<Labels<2>, Histogram, fn() -> Histogram>,
    /// `<app>_occ_conflicts_total{aggregate_type}`: appends refused by optimistic concurrency.
    pub conflicts: Family<Labels<1>, Counter>,
    /// `<app>_idempotent_replays_total{aggregate_type, source}`: retried commands answered with
    /// their first outcome (`source` = `stream` or `ledger`).
    pub replays: Family<Labels<2>, Counter>,
    /// `<app>_append_duration_seconds{aggregate_type}`.
    pub append_seconds: Family<Labels<1>, Histogram, fn() -> Histogram>,
    /// `<app>_aggregate_load_duration_seconds{aggregate_type}`: loads from the store.
    pub load_seconds: Family<Labels<1>, Histogram, fn() -> Histogram>,
    /// `<app>_aggregate_load_events_total{aggregate_type}`: events replayed by those loads
    /// (after the snapshot, when one was used).
    pub load_events: Family<Labels<1>, Counter>,
    /// `<app>_projection_events_total{view}`: events applied to a view.
    pub projection_events: Family<Labels<1>, Counter>,
    /// `<app>_projection_lag_events{view}`: events in the stream not yet applied.
    pub projection_lag: Family<Labels<1>, Gauge>,
    /// `<app>_projection_last_seq{view}`: stream sequence last applied.
    pub projection_last_seq: Family<Labels<1>, Gauge>,
    /// `<app>_projection_parked_events{view}`: events parked (poison) awaiting a retry.
    pub projection_parked: Family<Labels<1>, Gauge>,
    /// `<app>_projection_rebuilds_total{view}`.
    pub projection_rebuilds: Family<Labels<1>, Counter>,
    /// `<app>_saga_orders_total{outcome}`: orders the saga finished (`reserved`, `failed`,
    /// `completed`, `cancelled`).
    pub saga_orders: Family<Labels<1>, Counter>,
    /// `<app>_saga_failures_total{reason}`.
    pub saga_failures: Family<Labels<1>, Counter>,
    /// `<app>_saga_steps_total{command, outcome}`: stock commands the saga sent (`done`,
    /// `refused`, `no_answer`).
    pub saga_steps: Family<Labels<2>, Counter>,
    /// `<app>_saga_time_to_failure_seconds`: from `OrderStarted` to `OrderFailed`.
    pub saga_time_to_failure: Histogram,
    /// `<app>_notifications_total{status}`.
    pub notifications: Family<Labels<1>, Counter>,
    /// `<app>_http_requests_total{route, status}`.
    pub http_requests: Family<Labels<2>, Counter>,
    /// `<app>_http_request_duration_seconds{route}`.
    pub http_seconds: Family<Labels<1>, Histogram, fn() -> Histogram>,
    /// `<app>_http_concurrency_limit`: requests the gateway lets in at once, as its admission
    /// learned from their latency.
    pub http_concurrency_limit: Gauge,
    /// `<app>_http_in_flight`: requests the gateway works on now.
    pub http_in_flight: Gauge,
    /// `<app>_nats_connected`: 1 while the NATS connection is up.
    pub nats_connected: Gauge,
    /// `<app>_logs_shipped_total{level}`.
    pub logs_shipped: Family<Labels<1>, Counter>,
    /// `<app>_service_instances{service}`: instances answering NATS discovery (the gateway
    /// keeps it).
    pub service_instances: Family<Labels<1>, Gauge>,
    /// `<app>_archive_lag_events`: events of the event stream the archive has not copied yet.
    pub archive_lag: Gauge,
    /// `<app>_stream_messages{tier}` (`hot`, `archive`): messages in the event stream and the
    /// archive, as the archiver last saw them.
    pub stream_messages: Family<Labels<1>, Gauge>,
    /// `<app>_stream_bytes{tier}`: their bytes on disk.
    pub stream_bytes: Family<Labels<1>, Gauge>,
    /// `<app>_archive_runs_total{outcome}` (`ok`, `failed`): compaction runs.
    pub archive_runs: Family<Labels<1>, Counter>,
    /// `<app>_archive_purged_events_total{aggregate_type}`: events compaction removed from
    /// the hot stream (the archive keeps them).
    pub archive_purged: Family<Labels<1>, Counter>,
    /// `<app>_archive_last_run_timestamp_seconds`: when the last compaction run finished.
    pub archive_last_run: Gauge,
    /// `<app>_build_info{version}`: 1, labelled with the running build.
    pub build_info: Family<Labels<1>, Gauge>,
}

impl Metrics {
    /// A fresh registry with every metric registered, each name prefixed with `app`.
    pub fn new(app: &str) -> Self {
        let metrics = Self {
            registry: Mutex::new(Registry::default()),
            commands: Family::default(),
            command_seconds: Family::new_with_constructor(latency),
            conflicts: Family::default(),
            replays: Family::default(),
            append_seconds: Family::new_with_constructor(latency),
            load_seconds: Family::new_with_constructor(latency),
            load_events: Family::default(),
            projection_events: Family::default(),
            projection_lag: Family::default(),
            projection_last_seq: Family::default(),
            projection_parked: Family::default(),
            projection_rebuilds: Family::default(),
            saga_orders: Family::default(),
            saga_failures: Family::default(),
            saga_steps: Family::default(),
            saga_time_to_failure: latency(),
            notifications: Family::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency),
            http_concurrency_limit: Gauge::default(),
            http_in_flight: Gauge::default(),
            nats_connected: Gauge::default(),
            logs_shipped: Family::default(),
            service_instances: Family::default(),
            archive_lag: Gauge::default(),
            stream_messages: Family::default(),
            stream_bytes: Family::default(),
            archive_runs: Family::default(),
            archive_purged: Family::default(),
            archive_last_run: Gauge::default(),
            build_info: Family::default(),
        };
        metrics.build_info.get_or_create(&[("version", env!("CARGO_PKG_VERSION").into())]).set(1);
        {
            let mut root = metrics.registry.lock().unwrap_or_else(PoisonError::into_inner);
            // The standard `process_*` metrics, unprefixed as every Prometheus client names them.
            root.register_collector(Box::new(crate::process::ProcessCollector));
            let r = root.sub_registry_with_prefix(app);
            r.register("commands", "Commands answered, by outcome code", metrics.commands.clone());
            r.register("command_duration_seconds", "Command handling time", metrics.command_seconds.clone());
            r.register("occ_conflicts", "Appends refused by optimistic concurrency", metrics.conflicts.clone());
            r.register(
                "idempotent_replays",
                "Retried commands answered with their first outcome",
                metrics.replays.clone(),
            );
            r.register("append_duration_seconds", "Event append time", metrics.append_seconds.clone());
            r.register("aggregate_load_duration_seconds", "Aggregate load time", metrics.load_seconds.clone());
            r.register(
                "aggregate_load_events",
                "Events replayed by aggregate loads, after the snapshot used",
                metrics.load_events.clone(),
            );
            r.register("projection_events", "Events applied to views", metrics.projection_events.clone());
            r.register("projection_lag_events", "Events not yet applied to a view", metrics.projection_lag.clone());
            r.register(
                "projection_last_seq",
                "Stream sequence last applied to a view",
                metrics.projection_last_seq.clone(),
            );
            r.register("projection_parked_events", "Events parked per view", metrics.projection_parked.clone());
            r.register("projection_rebuilds", "View rebuilds", metrics.projection_rebuilds.clone());
            r.register("saga_orders", "Orders the saga finished, by outcome", metrics.saga_orders.clone());
            r.register("saga_failures", "Orders failed by the saga, by reason", metrics.saga_failures.clone());
            r.register("saga_steps", "Stock commands sent by the saga, by outcome", metrics.saga_steps.clone());
            r.register(
                "saga_time_to_failure_seconds",
                "From OrderStarted to OrderFailed",
                metrics.saga_time_to_failure.clone(),
            );
            r.register("notifications", "Notifications sent, by status", metrics.notifications.clone());
            r.register("http_requests", "HTTP requests, by route and status", metrics.http_requests.clone());
            r.register("http_request_duration_seconds", "HTTP request time", metrics.http_seconds.clone());
            r.register(
                "http_concurrency_limit",
                "Requests the gateway lets in at once, learned from their latency",
                metrics.http_concurrency_limit.clone(),
            );
            r.register("http_in_flight", "Requests the gateway works on now", metrics.http_in_flight.clone());
            r.register("nats_connected", "1 while the NATS connection is up", metrics.nats_connected.clone());
            r.register("logs_shipped", "Log records shipped to the LOGS stream", metrics.logs_shipped.clone());
            r.register(
                "service_instances",
                "Instances of each service answering NATS discovery",
                metrics.service_instances.clone(),
            );
            r.register("archive_lag_events", "Events the archive has not copied yet", metrics.archive_lag.clone());
            r.register(
                "stream_messages",
                "Messages in the hot event stream and the archive",
                metrics.stream_messages.clone(),
            );
            r.register("stream_bytes", "Bytes of the hot event stream and the archive", metrics.stream_bytes.clone());
            r.register("archive_runs", "Compaction runs of the archiver, by outcome", metrics.archive_runs.clone());
            r.register(
                "archive_purged_events",
                "Events compaction removed from the hot stream",
                metrics.archive_purged.clone(),
            );
            r.register("build_info", "The running build (always 1)", metrics.build_info.clone());
            r.register(
                "archive_last_run_timestamp_seconds",
                "When the last compaction run finished",
                metrics.archive_last_run.clone(),
            );
        }
        metrics
    }

    /// Counts one answered command and its duration.
    pub fn command(&self, aggregate_type: &'static str, command: &'static str, code: &'static str, elapsed: Duration) {
        self.commands
            .get_or_create(&[
                ("aggregate_type", label(aggregate_type)),
                ("command", label(command)),
                ("code", label(code)),
            ])
            .inc();
        self.command_seconds
            .get_or_create(&[("aggregate_type", label(aggregate_type)), ("command", label(command))])
            .observe(elapsed.as_secs_f64());
    }

    /// Counts a replayed command (`source`: `stream` or `ledger`).
    pub fn replayed(&self, aggregate_type: &'static str, source: &'static str) {
        self.replays.get_or_create(&[("aggregate_type", label(aggregate_type)), ("source", label(source))]).inc();
    }

    /// The label set of one view.
    pub fn view(name: impl Into<Cow<'static, str>>) -> Labels<1> {
        [("view", name.into())]
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if encode(&mut out, &registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Feeds the command pipeline's observations into [`Metrics`].
pub struct RepositoryMetrics(pub Arc<Metrics>);

impl jetsource::Observer for RepositoryMetrics {
    fn appended(&self, aggregate_type: &'static str, _events: usize, elapsed: Duration) {
        self.0
            .append_seconds
            .get_or_create(&[("aggregate_type", label(aggregate_type))])
            .observe(elapsed.as_secs_f64());
    }

    fn conflict(&self, aggregate_type: &'static str) {
        self.0.conflicts.get_or_create(&[("aggregate_type", label(aggregate_type))]).inc();
    }

    fn replayed(&self, aggregate_type: &'static str) {
        self.0.replayed(aggregate_type, "stream");
    }

    fn loaded(&self, aggregate_type: &'static str, events: u64, elapsed: Duration) {
        self.0.load_seconds.get_or_create(&[("aggregate_type", label(aggregate_type))]).observe(elapsed.as_secs_f64());
        self.0.load_events.get_or_create(&[("aggregate_type", label(aggregate_type))]).inc_by(events);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_registered_metrics_with_the_application_prefix() {
        let metrics = Metrics::new("shop");
        metrics.command("stock", "receive", "succeeded", Duration::from_millis(2));
        metrics.nats_connected.set(1);
        let text = metrics.render();
        assert!(
            text.contains(r#"shop_commands_total{aggregate_type="stock",command="receive",code="succeeded"} 1"#),
            "{text}"
        );
        assert!(text.contains("shop_command_duration_seconds_bucket"), "{text}");
        assert!(text.contains("shop_nats_connected 1"), "{text}");
        for standard in [
            "process_cpu_seconds_total ",
            "process_resident_memory_bytes ",
            "process_open_fds ",
            "process_start_time_seconds ",
        ] {
            assert!(text.contains(standard), "{standard}: {text}");
        }
        assert!(text.contains("shop_build_info{version="), "{text}");
    }
}
