//! Reads through the archive tier: a purge that overtakes a read under way costs it nothing.

use std::future::IntoFuture;
use std::ops::ControlFlow;

use jetsource::{CommandContext, EventStore, RepositoryConfig, StoreConfig};

use crate::support::{BinCommand, Env, id};

/// Waits until the archive holds `n` messages.
async fn archived(js: &async_nats::jetstream::Context, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while js.get_stream("ARCHIVE").await.unwrap().cached_info().state.messages < n {
        assert!(std::time::Instant::now() < deadline, "the archive did not catch up");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_that_overtakes_a_read_is_made_up_from_the_archive() {
    // Arrange: 100 events of one aggregate, all archived; a read in batches of 10
    let env = Env::start().await;
    let repo = env.repository(RepositoryConfig::default());
    repo.execute(&id("bolt@main"), BinCommand::ReceiveMany(vec![1; 100]), &CommandContext::new()).await.unwrap();
    let js = async_nats::jetstream::new(env.client.clone());
    archived(&js, 100).await;
    let store = EventStore::new(env.client.clone(), StoreConfig { read_batch: 10, ..Default::default() });
    let events = js.get_stream("EVENTS").await.unwrap();

    // Act: at the 5th event, the events before seq 80 are purged from the hot stream
    let mut versions = Vec::new();
    let mut purged = 0;
    store
        .read_with("evt.bin.bolt@main", 1, usize::MAX, |event| {
            if versions.len() == 5 {
                let purge = events.purge().filter("evt.bin.bolt@main").sequence(80).into_future();
                purged =
                    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(purge)).unwrap().purged;
            }
            versions.push(event.attributes().unwrap().aggregate_version.unwrap());
            Ok(ControlFlow::Continue(()))
        })
        .await
        .unwrap();

    // Assert: every version once, in order, though the hot stream lost 79 of them mid-read
    assert_eq!(purged, 79);
    assert_eq!(versions, (1..=100).collect::<Vec<u64>>());
}

/// Counts the events of each `bin` aggregate.
#[derive(Default)]
struct Count;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct CountDoc {
    events: u64,
}

impl jetsource::projection::Projection for Count {
    type Doc = CountDoc;
    fn name(&self) -> &'static str {
        "count"
    }
    fn subjects(&self) -> Vec<String> {
        vec!["evt.bin.>".into()]
    }
    fn keys(&self, event: &jetsource::projection::EventView<'_>) -> Result<Vec<String>, String> {
        Ok(vec![event.aggregate_id.replace('@', "=")])
    }
    fn apply(&self, _: &jetsource::projection::EventView<'_>, _: &str, doc: &mut CountDoc) -> Result<(), String> {
        doc.events += 1;
        Ok(())
    }
}

#[tokio::test]
async fn a_new_view_version_over_an_archive_counts_as_behind_until_it_has_read_it() {
    use jetsource::projection::{ViewConfig, ViewWorker};
    // Arrange: 50 events, archived, and the first 40 purged from the hot stream
    let env = Env::start().await;
    let repo = env.repository(RepositoryConfig::default());
    repo.execute(&id("bolt@main"), BinCommand::ReceiveMany(vec![1; 50]), &CommandContext::new()).await.unwrap();
    let js = async_nats::jetstream::new(env.client.clone());
    archived(&js, 50).await;
    js.get_stream("EVENTS").await.unwrap().purge().filter("evt.bin.bolt@main").sequence(41).await.unwrap();

    // Act
    let worker =
        ViewWorker::open(env.client.clone(), std::sync::Arc::new(Count), 1, ViewConfig::default(), None).await.unwrap();
    let handle = worker.handle();
    let behind = handle.lag();
    let consumer = js.get_stream("EVENTS").await.unwrap().consumer_info("projector_count_v1").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let read = handle.wait_applied(50, std::time::Duration::from_secs(10)).await;

    // Assert: behind from the start, its consumer already holding compaction after the
    // archive's end, and then every event counted once
    assert!(behind > 0, "a version with the archive to read is not caught up");
    assert!(
        matches!(
            consumer.config.deliver_policy,
            async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: 51 }
        ),
        "{:?}",
        consumer.config.deliver_policy
    );
    assert!(read, "the archive was read");
    let doc = handle.get("bolt=main").await.unwrap().unwrap();
    assert_eq!(doc["events"], 50, "{doc}");
    let _ = stop.send(());
}
