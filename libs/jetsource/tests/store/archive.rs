//! Reads through the archive tier: a purge that overtakes a read under way costs it nothing.

use std::future::IntoFuture;
use std::ops::ControlFlow;

use jetsource::{CommandContext, EventStore, RepositoryConfig, StoreConfig};

use crate::support::{BinCommand, Env, id};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_that_overtakes_a_read_is_made_up_from_the_archive() {
    // Arrange: 100 events of one aggregate, all archived; a read in batches of 10
    let env = Env::start().await;
    let repo = env.repository(RepositoryConfig::default());
    repo.execute(&id("bolt@main"), BinCommand::ReceiveMany(vec![1; 100]), &CommandContext::new()).await.unwrap();
    let js = async_nats::jetstream::new(env.client.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while js.get_stream("ARCHIVE").await.unwrap().cached_info().state.messages < 100 {
        assert!(std::time::Instant::now() < deadline, "the archive did not catch up");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
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
