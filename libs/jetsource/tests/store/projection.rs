use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jetsource::projection::{EventView, Projection, ViewConfig, ViewHandle, ViewWorker};
use jetsource::{CommandContext, RepositoryConfig};
use serde::{Deserialize, Serialize};

use crate::support::{BinCommand, Env, id};

/// Fails to apply events of aggregate `flaky` while set.
static FLAKY_FAILS: AtomicBool = AtomicBool::new(true);

#[derive(Default)]
struct Tally;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct TallyDoc {
    received: u64,
    events: u64,
}

impl Projection for Tally {
    type Doc = TallyDoc;
    fn name(&self) -> &'static str {
        "tally"
    }
    fn subjects(&self) -> Vec<String> {
        vec!["evt.bin.>".into()]
    }
    fn keys(&self, event: &EventView<'_>) -> Result<Vec<String>, String> {
        Ok(vec![event.aggregate_id.replace('@', "=")])
    }
    fn apply(&self, event: &EventView<'_>, _key: &str, doc: &mut TallyDoc) -> Result<(), String> {
        if event.aggregate_id == "flaky" && FLAKY_FAILS.load(Ordering::Relaxed) {
            return Err("flaky is failing".into());
        }
        let data: serde_json::Value = serde_json::from_slice(&event.stored.data).map_err(|e| e.to_string())?;
        doc.received += data["qty"].as_u64().unwrap_or(0);
        doc.events += 1;
        Ok(())
    }
}

async fn start_worker(env: &Env) -> (ViewHandle, tokio::sync::oneshot::Sender<()>) {
    let worker = ViewWorker::open(env.client.clone(), Arc::new(Tally), 1, ViewConfig::default(), None).await.unwrap();
    let handle = worker.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    (handle, stop)
}

async fn doc(handle: &ViewHandle, key: &str) -> Option<serde_json::Value> {
    handle.get(key).await.unwrap()
}

#[tokio::test]
async fn a_parked_aggregate_waits_while_others_flow_and_a_retry_applies_it_in_order() {
    // Arrange
    let env = Env::start().await;
    let repo = env.repository(RepositoryConfig::default());
    let (handle, _stop) = start_worker(&env).await;
    for (agg, qty) in [("flaky", 1), ("steady", 5), ("flaky", 2), ("steady", 6)] {
        repo.execute(&id(agg), BinCommand::Receive { qty }, &CommandContext::new()).await.unwrap();
    }
    let last = env.store.last_seq("evt.bin.steady").await.unwrap();
    assert!(handle.wait_applied(last, Duration::from_secs(10)).await);

    // Assert (while failing): steady flowed, flaky waits with both its events
    assert_eq!(doc(&handle, "steady").await.unwrap()["received"], 11);
    assert!(doc(&handle, "flaky").await.is_none());
    assert_eq!(handle.parked(), 2);
    assert_eq!(handle.retry(None).await.unwrap().still_parked, 2, "a retry while still failing keeps them");

    // Act: the cause is fixed; retry
    FLAKY_FAILS.store(false, Ordering::Relaxed);
    let report = handle.retry(None).await.unwrap();

    // Assert: both applied, in order, once
    assert_eq!((report.applied, report.still_parked), (2, 0));
    let flaky = doc(&handle, "flaky").await.unwrap();
    assert_eq!((flaky["received"].as_u64(), flaky["events"].as_u64()), (Some(3), Some(2)));
    assert_eq!(handle.parked(), 0);

    // and events after the retry flow again
    let after = repo.execute(&id("flaky"), BinCommand::Receive { qty: 10 }, &CommandContext::new()).await.unwrap();
    assert!(handle.wait_applied(after.stream_seq, Duration::from_secs(10)).await);
    assert_eq!(doc(&handle, "flaky").await.unwrap()["received"], 13);
}

#[tokio::test]
async fn redelivered_events_are_no_ops_thanks_to_the_seq_in_each_document() {
    // Arrange: a view that has applied everything
    let env = Env::start().await;
    let repo = env.repository(RepositoryConfig::default());
    let (handle, stop) = start_worker(&env).await;
    let mut last = 0;
    for qty in 1..=10 {
        last =
            repo.execute(&id("again"), BinCommand::Receive { qty }, &CommandContext::new()).await.unwrap().stream_seq;
    }
    assert!(handle.wait_applied(last, Duration::from_secs(10)).await);
    let _ = stop.send(());

    // Act: rewind the consumer to the first event and run the view again
    let js = async_nats::jetstream::new(env.client.clone());
    js.get_stream("EVENTS").await.unwrap().reset_consumer("projector_tally_v1", Some(1)).await.unwrap();
    let (handle, _stop) = start_worker(&env).await;
    let more = repo.execute(&id("again"), BinCommand::Receive { qty: 100 }, &CommandContext::new()).await.unwrap();
    assert!(handle.wait_applied(more.stream_seq, Duration::from_secs(10)).await);

    // Assert
    let again = doc(&handle, "again").await.unwrap();
    assert_eq!((again["received"].as_u64(), again["events"].as_u64()), (Some(155), Some(11)));
    assert_eq!(again["seq"].as_u64(), Some(more.stream_seq));
}

/// The same tally, without a key index: new keys are assumed absent and written only if so.
#[derive(Default)]
struct Unindexed;

impl Projection for Unindexed {
    type Doc = TallyDoc;
    fn name(&self) -> &'static str {
        "unindexed"
    }
    fn subjects(&self) -> Vec<String> {
        vec!["evt.bin.>".into()]
    }
    fn indexed(&self) -> bool {
        false
    }
    fn keys(&self, event: &EventView<'_>) -> Result<Vec<String>, String> {
        Tally.keys(event)
    }
    fn apply(&self, event: &EventView<'_>, key: &str, doc: &mut TallyDoc) -> Result<(), String> {
        if event.aggregate_id == "flaky" {
            return Ok(());
        }
        Tally.apply(event, key, doc)
    }
}

#[tokio::test]
async fn a_view_without_index_never_overwrites_a_document_it_assumed_new() {
    // Arrange: a first run writes the document, a second starts with nothing in memory
    let env = Env::start().await;
    let repo = env.repository(RepositoryConfig::default());
    let open = || ViewWorker::open(env.client.clone(), Arc::new(Unindexed), 1, ViewConfig::default(), None);
    let first = open().await.unwrap();
    let handle = first.handle();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(first.run(async move {
        let _ = stopped.await;
    }));
    let one = repo.execute(&id("kept"), BinCommand::Receive { qty: 1 }, &CommandContext::new()).await.unwrap();
    assert!(handle.wait_applied(one.stream_seq, Duration::from_secs(10)).await);
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(100)).await;

    // Act
    let second = open().await.unwrap();
    let handle = second.handle();
    tokio::spawn(second.run(std::future::pending()));
    let two = repo.execute(&id("kept"), BinCommand::Receive { qty: 2 }, &CommandContext::new()).await.unwrap();

    // Assert: the stored document was found and extended, not replaced
    assert!(handle.wait_applied(two.stream_seq, Duration::from_secs(10)).await);
    let kept = doc(&handle, "kept").await.unwrap();
    assert_eq!((kept["received"].as_u64(), kept["events"].as_u64()), (Some(3), Some(2)));
}

type Updates = dyn futures::Stream<Item = Result<jetsource::projection::ViewUpdate, jetsource::projection::ProjectionError>>
    + Unpin
    + Send;

async fn next(updates: &mut Updates) -> jetsource::projection::ViewUpdate {
    use futures::StreamExt;
    tokio::time::timeout(Duration::from_secs(10), updates.next()).await.unwrap().unwrap().unwrap()
}

#[tokio::test]
async fn a_watch_sees_each_change_and_resumes_after_the_revision_it_last_saw() {
    use jetsource::projection::WatchFilter;

    // Arrange
    let env = Env::start().await;
    let repo = env.repository(RepositoryConfig::default());
    let (handle, _stop) = start_worker(&env).await;
    let first = repo.execute(&id("w1"), BinCommand::Receive { qty: 1 }, &CommandContext::new()).await.unwrap();
    assert!(handle.wait_applied(first.stream_seq, Duration::from_secs(10)).await);
    let mut updates = Box::pin(handle.watch(WatchFilter::Key("w1".into()), None).await.unwrap());

    // Act / Assert: the current document first, then each change as it is applied
    let current = next(&mut updates).await;
    assert_eq!(current.doc.unwrap()["received"], 1);
    repo.execute(&id("other"), BinCommand::Receive { qty: 7 }, &CommandContext::new()).await.unwrap();
    repo.execute(&id("w1"), BinCommand::Receive { qty: 2 }, &CommandContext::new()).await.unwrap();
    let changed = next(&mut updates).await;
    assert_eq!(changed.doc.unwrap()["received"], 3, "only w1's changes");

    // a new watch resuming after the first revision starts with the change, not the past
    let mut resumed = Box::pin(handle.watch(WatchFilter::Key("w1".into()), Some(current.revision)).await.unwrap());
    assert_eq!(next(&mut resumed).await.revision, changed.revision);

    // a prefix watch sees every matching key
    let mut all = Box::pin(handle.watch(WatchFilter::Prefix("w".into()), None).await.unwrap());
    assert_eq!(next(&mut all).await.key, "w1");
}

/// One document per event.
#[derive(Default)]
struct PerEvent;

impl Projection for PerEvent {
    type Doc = TallyDoc;
    fn name(&self) -> &'static str {
        "perevent"
    }
    fn subjects(&self) -> Vec<String> {
        vec!["evt.bin.>".into()]
    }
    fn indexed(&self) -> bool {
        false
    }
    fn keys(&self, event: &EventView<'_>) -> Result<Vec<String>, String> {
        Ok(vec![format!("e{}", event.seq())])
    }
    fn apply(&self, _event: &EventView<'_>, _key: &str, doc: &mut TallyDoc) -> Result<(), String> {
        doc.events += 1;
        Ok(())
    }
}

#[tokio::test]
async fn a_new_version_reads_its_history_in_batches_that_write_more_documents_than_acks_in_flight() {
    // Arrange: 6,000 events that each make a document of their own: one backfill batch writes
    // more documents than a JetStream context lets await an acknowledgement at once (5,000)
    let env = Env::start().await;
    let repo = env.repository(RepositoryConfig::default());
    for _ in 0..6 {
        repo.execute(&id("bolt@main"), BinCommand::ReceiveMany(vec![1; 1000]), &CommandContext::new()).await.unwrap();
    }
    let js = async_nats::jetstream::new(env.client.clone());
    let last = js.get_stream("EVENTS").await.unwrap().get_info().await.unwrap().state.last_sequence;

    // Act
    let worker =
        ViewWorker::open(env.client.clone(), Arc::new(PerEvent), 1, ViewConfig::default(), None).await.unwrap();
    let handle = worker.handle();
    let consumer = js.get_stream("EVENTS").await.unwrap().consumer_info("projector_perevent_v1").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let read = handle.wait_applied(last, Duration::from_secs(30)).await;
    // (a version is caught up once nothing lags: the record goes last)
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while handle.lag() > 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Assert: the history recorded as the backfill, read, one document per event; the durable
    // consumer starts after it and its record is gone
    // (`<archive seq> <from> <to>`: the archive may already hold some of it)
    let record = consumer.config.metadata.get("jetsource.backfill").cloned().unwrap_or_default();
    assert!(record.ends_with(&format!(" {last}")), "backfill record {record:?}");
    assert!(read, "the backfill did not finish (applied {} of {last})", handle.applied());
    assert_eq!(handle.documents().await, Some(6000));
    assert_eq!(doc(&handle, "e6000").await.unwrap()["events"], 1);
    let consumer = js.get_stream("EVENTS").await.unwrap().consumer_info("projector_perevent_v1").await.unwrap();
    assert!(
        matches!(
            consumer.config.deliver_policy,
            async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence } if start_sequence == last + 1
        ),
        "{:?}",
        consumer.config.deliver_policy
    );
    assert!(!consumer.config.metadata.contains_key("jetsource.backfill"), "{:?}", consumer.config.metadata);
    let _ = stop.send(());
}
