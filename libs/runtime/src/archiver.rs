//! The archiver service: compacts the hot event stream by the topology's `[[retention]]`
//! against its `[archive]` (see [`jetsource::archive`]), every `[archive] every` and once
//! shortly after it starts, and keeps the archive's metrics: lag, hot and archived sizes,
//! runs and purged events. `<app> archive run` does the same work on demand.

use std::sync::Arc;
use std::time::Duration;

use jetsource::archive::{Archiver, RunOptions};
use jetsource::topology::Topology;
use jetsource_telemetry::Metrics;
use jetsource_telemetry::metrics::Labels;

use crate::micro::MicroService;
use crate::registry::StartError;

/// The running archiver.
pub struct ArchiverService {
    archiver: Archiver,
    metrics: Arc<Metrics>,
    _micro: MicroService,
}

impl ArchiverService {
    /// Opens the archive and the snapshots bucket, and answers `$SRV` discovery.
    ///
    /// # Errors
    /// When the topology declares no `[archive]`, or JetStream does not answer.
    pub async fn start(
        client: async_nats::Client,
        topology: &Topology,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StartError> {
        let archiver = Archiver::open(client.clone(), topology).await?;
        let micro = MicroService::start(
            &client,
            "archiver",
            env!("CARGO_PKG_VERSION"),
            "Compacts the hot event stream against the archive, by the declared retention",
        )
        .await?;
        Ok(Self { archiver, metrics, _micro: micro })
    }

    /// Runs a compaction every `[archive] every` (the first a few seconds after the start)
    /// until `stop`, and refreshes the archive's gauges every ten seconds.
    pub async fn run_until_stopped(self, stop: crate::Shutdown) {
        let mut next_run = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut gauges = tokio::time::interval(Duration::from_secs(10));
        loop {
            tokio::select! {
                () = stop.wait() => return,
                _ = gauges.tick() => self.refresh_gauges().await,
                () = tokio::time::sleep_until(next_run) => {
                    self.run_once().await;
                    next_run = tokio::time::Instant::now() + self.archiver.every;
                }
            }
        }
    }

    async fn run_once(&self) {
        let started = std::time::Instant::now();
        match self.archiver.run(&RunOptions::default(), |_| {}).await {
            Ok(report) => {
                self.metrics.archive_runs.get_or_create(&outcome("ok")).inc();
                for (kind, run) in &report.types {
                    self.metrics
                        .archive_purged
                        .get_or_create(&[("aggregate_type", kind.clone().into())])
                        .inc_by(run.purged);
                }
                let purged: u64 = report.types.values().map(|r| r.purged).sum();
                tracing::info!(
                    service = "archiver",
                    purged,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "compaction run finished"
                );
            }
            Err(e) => {
                self.metrics.archive_runs.get_or_create(&outcome("failed")).inc();
                tracing::warn!(service = "archiver", error = %e, "compaction run failed; the next run continues");
            }
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.metrics.archive_last_run.set(now);
        self.refresh_gauges().await;
    }

    async fn refresh_gauges(&self) {
        let Ok(sizes) = self.archiver.sizes().await else { return };
        self.metrics.archive_lag.set(i64::try_from(sizes.lag).unwrap_or(i64::MAX));
        for (tier, size) in [("hot", sizes.hot), ("archive", sizes.archived)] {
            let labels: Labels<1> = [("tier", tier.into())];
            self.metrics.stream_messages.get_or_create(&labels).set(i64::try_from(size.messages).unwrap_or(i64::MAX));
            self.metrics.stream_bytes.get_or_create(&labels).set(i64::try_from(size.bytes).unwrap_or(i64::MAX));
        }
    }
}

fn outcome(value: &'static str) -> Labels<1> {
    [("outcome", value.into())]
}
