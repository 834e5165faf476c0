//! The bounded event log: compaction of the hot stream against the archive changes no read
//! (state at every version and time, history, loads, rebuilt views), never purges what the
//! archive does not hold, and a killed archiver loses nothing. The archiver service is left
//! out: each test runs compaction when it means to.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use jetsource::archive::{Archiver, RunOptions, RunReport};
use jetsource::topology::Topology;
use jetsource::{AggregateId, EventStore, Until};
use serde_json::Value;

use crate::fold::assert_views_equal_fold;
use crate::support::Factory;

/// Everything a user can read of one aggregate: the state at every version (and at the time
/// each event was recorded) and the full history as CloudEvents.
#[derive(Debug, PartialEq)]
struct Readings {
    versions: Vec<Value>,
    at_times: Vec<Value>,
    history: Value,
}

async fn readings(store: &EventStore, kind: &str, id: &str) -> Readings {
    let app = factory::registry::app();
    let entry = app.aggregate_entry(kind).unwrap();
    let id = AggregateId::new(id).unwrap();
    let full = entry.inspect(store, &id, Until::End, true).await.unwrap();
    let events = full["events"].as_array().unwrap().clone();
    let mut versions = Vec::new();
    let mut at_times = Vec::new();
    for (index, event) in events.iter().enumerate() {
        let version = index as u64 + 1;
        versions.push(entry.inspect(store, &id, Until::Version(version), false).await.unwrap());
        // Every fifth event's recorded time: time travel reads the same clock after compaction.
        if index % 5 == 0 {
            let at = time::OffsetDateTime::parse(
                event["recordedtime"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap();
            at_times.push(entry.inspect(store, &id, Until::Time(at), false).await.unwrap());
        }
    }
    Readings { versions, at_times, history: Value::Array(events) }
}

/// Receives stock into `id` `n` times, 16 commands at a time.
async fn receive(factory: &Factory, id: &str, n: usize) {
    let subject = format!("cmd.stock.{id}.receive");
    let replies: Vec<_> = futures::stream::iter(0..n)
        .map(|_| factory.send(&subject, r#"{"qty": 1}"#))
        .buffer_unordered(16)
        .collect()
        .await;
    for reply in replies {
        reply.ok();
    }
}

async fn archiver(factory: &Factory) -> Archiver {
    let topology = Topology::parse(factory::TOPOLOGY).unwrap();
    Archiver::open(factory.client.clone(), &topology).await.unwrap()
}

/// Waits (at most 10 s) until the archive has copied every event.
async fn archive_caught_up(archiver: &Archiver) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while archiver.sizes().await.unwrap().lag > 0 {
        assert!(std::time::Instant::now() < deadline, "the archive did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the archive has copied every event and every snapshot written in the
/// background is in place, then runs a compaction.
async fn compact(factory: &Factory) -> RunReport {
    let archiver = archiver(factory).await;
    archive_caught_up(&archiver).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // snapshots are written in the background
    archiver.run(&RunOptions::default(), |_| {}).await.unwrap()
}

fn hot_events(report: &RunReport) -> u64 {
    report.types["stock"].purged
}

#[tokio::test]
async fn compaction_at_random_points_changes_no_read_and_a_rebuild_equals_the_fold() {
    // Arrange: stock items with long histories, snapshots every 100 events, compacted after
    // each of two rounds of commands (so at different points of each history)
    let factory = Factory::start_without(&["archiver"]).await;
    factory.seed().await;
    let lengths = [("bolt@main", 137), ("nut@main", 260), ("gear@north", 101), ("pin@north", 40)];
    for (id, n) in lengths {
        receive(&factory, id, n / 2).await;
    }
    let store = EventStore::new(factory.client.clone(), Default::default());
    let first = compact(&factory).await;
    for (id, n) in lengths {
        receive(&factory, id, n - n / 2).await;
    }
    let mut before = BTreeMap::new();
    for (id, _) in lengths {
        before.insert(id, readings(&store, "stock", id).await);
    }

    // Act
    let second = compact(&factory).await;

    // Assert: events left the hot stream, every read is as it was
    let purged = hot_events(&first) + hot_events(&second);
    assert!(hot_events(&second) > 0 && purged >= 300, "compaction purged {purged} events: {first:?} {second:?}");
    for (id, _) in lengths {
        let after = readings(&store, "stock", id).await;
        assert_eq!(after, before[id], "{id} reads differently after compaction");
    }
    let js = async_nats::jetstream::new(factory.client.clone());
    let hot = js.get_stream("EVENTS").await.unwrap().info_with_subjects("evt.stock.nut@main").await.unwrap();
    let count = hot.map(|r| r.unwrap().1).collect::<Vec<_>>().await;
    assert!(count[0] < 100, "the hot stream keeps {} of nut@main's 260 events", count[0]);
    // Commands go on from the compacted state, at the next version.
    let reply = factory.send("cmd.stock.nut@main.receive", r#"{"qty": 1}"#).await;
    assert_eq!(reply.ok()["version"], 261);

    // A rebuild reads the archive, then the hot stream, and equals a fold of the full log.
    let started = factory.query("projector.rebuild.stock", "").await;
    assert_eq!(started.ok()["version"], 2);
    factory.wait_view_version("stock", 2).await;
    assert_views_equal_fold(&factory).await;
    // The new version's consumer started after the archive's end, and its reading of the
    // archive is recorded as done.
    let consumer = js.get_stream("EVENTS").await.unwrap().consumer_info("projector_stock_v2").await.unwrap();
    assert!(
        matches!(
            consumer.config.deliver_policy,
            async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence { .. }
        ),
        "{:?}",
        consumer.config.deliver_policy
    );
    assert!(
        consumer.config.metadata.keys().all(|k| !k.contains("reading_archive") && !k.contains("backfill")),
        "{:?}",
        consumer.config.metadata
    );
}

#[tokio::test]
async fn a_version_still_reading_its_history_holds_compaction_back_from_where_it_reads() {
    // Arrange: a history past its snapshot, archived; a view version that started after the
    // stream's end and records the backfill of all of it still to do
    let factory = Factory::start_without(&["archiver"]).await;
    receive(&factory, "bolt@main", 150).await;
    let js = async_nats::jetstream::new(factory.client.clone());
    let events = js.get_stream("EVENTS").await.unwrap();
    let last = events.get_info().await.unwrap().state.last_sequence;
    events
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("projector_stock_v9".into()),
            filter_subject: "evt.stock.>".into(),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: last + 1,
            },
            metadata: [("jetsource.backfill".to_owned(), format!("0 1 {last}"))].into(),
            ..Default::default()
        })
        .await
        .unwrap();

    // Act
    let held = compact(&factory).await;
    events.delete_consumer("projector_stock_v9").await.unwrap();
    let released = compact(&factory).await;

    // Assert: nothing the version has still to read left the hot stream; once it is gone,
    // compaction goes on
    assert_eq!(hot_events(&held), 0, "{held:?}");
    assert!(hot_events(&released) > 0, "{released:?}");
}

#[tokio::test]
async fn an_archive_that_falls_behind_holds_compaction_back() {
    // Arrange: a history in both tiers, then the archive stops copying and more events come
    let factory = Factory::start_without(&["archiver"]).await;
    receive(&factory, "bolt@main", 150).await;
    let archiver = archiver(&factory).await;
    archive_caught_up(&archiver).await;
    let js = async_nats::jetstream::new(factory.client.clone());
    let archive = js.get_stream("ARCHIVE").await.unwrap();
    let mut paused = archive.cached_info().config.clone();
    let sources = paused.sources.take();
    js.update_stream(&paused).await.unwrap();
    receive(&factory, "bolt@main", 100).await; // snapshot at 200 and 250, neither archived
    tokio::time::sleep(Duration::from_millis(200)).await;
    let store = EventStore::new(factory.client.clone(), Default::default());
    let archived = store.archived_up_to("evt.stock.bolt@main").await.unwrap();

    // Act
    let report = archiver.run(&RunOptions::default(), |_| {}).await.unwrap();

    // Assert: only what the archive holds left the hot stream
    assert_eq!(report.types["stock"].held_by_archive, 1, "{report:?}");
    let mut first_hot = 0;
    store
        .read_hot("evt.stock.bolt@main", 1, 1, |e| {
            first_hot = e.seq;
            Ok(std::ops::ControlFlow::Break(()))
        })
        .await
        .unwrap();
    assert_eq!(first_hot, archived + 1, "the hot stream starts right after the archive's last copy");
    let history = store.read("evt.stock.bolt@main", 1, usize::MAX).await.unwrap();
    assert_eq!(history.len(), 250, "every event is still readable");
    let status = archiver.status().await.unwrap();
    assert!(!status.sizes.sourcing, "{status:?}");

    // The archive catches up once its source is back, and the next run purges the rest.
    paused.sources = sources;
    js.update_stream(&paused).await.unwrap();
    let report = compact(&factory).await;
    assert!(report.types["stock"].purged > 0 && report.types["stock"].held_by_archive == 0, "{report:?}");
}

#[tokio::test]
async fn a_killed_archiver_loses_nothing_and_the_next_run_finishes() {
    // Arrange: many stock items past their first snapshot
    let factory = Factory::start_without(&["archiver"]).await;
    let ids: Vec<String> = (0..60).map(|i| format!("part{i}@main")).collect();
    futures::stream::iter(ids.iter()).for_each_concurrent(4, |id| receive(&factory, id, 105)).await;
    let store = EventStore::new(factory.client.clone(), Default::default());
    let archiver = archiver(&factory).await;
    archive_caught_up(&archiver).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut before = BTreeMap::new();
    for id in &ids {
        before.insert(id.clone(), store.read(&format!("evt.stock.{id}"), 1, usize::MAX).await.unwrap().len());
    }
    let js = async_nats::jetstream::new(factory.client.clone());
    let hot_before = js.get_stream("EVENTS").await.unwrap().cached_info().state.messages;

    // Act: `factory archive run`, killed as soon as its first purge lands
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["archive", "run", "--type", "stock", "--nats-url", &factory.server.url()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let hot = js.get_stream("EVENTS").await.unwrap().cached_info().state.messages;
        if hot < hot_before {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the archiver purged nothing");
        assert!(child.try_wait().unwrap().is_none(), "the archiver finished before it was seen purging");
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // Assert: every history is whole; a second run finishes what the first began
    for id in &ids {
        let history = store.read(&format!("evt.stock.{id}"), 1, usize::MAX).await.unwrap();
        assert_eq!(history.len(), before[id], "{id} lost events");
        let versions: Vec<u64> = history.iter().map(|e| e.attributes().unwrap().aggregate_version.unwrap()).collect();
        assert_eq!(versions, (1..=before[id] as u64).collect::<Vec<_>>(), "{id}: each event once, in order");
    }
    let rest = archiver.run(&RunOptions::default(), |_| {}).await.unwrap();
    assert!(rest.types["stock"].purged > 0, "the kill landed after the run had finished: {rest:?}");
    for id in &ids {
        assert_eq!(store.read(&format!("evt.stock.{id}"), 1, usize::MAX).await.unwrap().len(), before[id]);
    }
    let status = archiver.status().await.unwrap();
    assert!(status.types["stock"].hot.events <= 60 * 6, "{status:?}");
    assert_eq!(status.types["stock"].archived.events, 60 * 105);
}

#[tokio::test]
async fn a_closed_order_keeps_only_its_last_event_hot_and_reads_the_same() {
    // Arrange: an order completed, one still open; orders close after 1 s instead of 30 days
    let factory = Factory::start_without(&["archiver"]).await;
    factory.seed().await;
    for order in ["o-1", "o-2"] {
        let plan = r#"{"product_id": "widget", "qty": 1, "warehouse": "main"}"#;
        factory.send(&format!("cmd.order.{order}.plan"), plan).await.ok();
        factory.send(&format!("cmd.order.{order}.start"), "{}").await.ok();
    }
    let store = EventStore::new(factory.client.clone(), Default::default());
    let app = factory::registry::app();
    let orders = app.aggregate_entry("order").unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let o1 = orders.inspect(&store, &AggregateId::new("o-1").unwrap(), Until::End, false).await.unwrap();
        if o1["state"]["status"] == "reserved" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "o-1 was not reserved: {o1}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    factory.send("cmd.order.o-1.complete", "{}").await.ok();
    let before = (readings(&store, "order", "o-1").await, readings(&store, "order", "o-2").await);
    let mut topology = Topology::parse(factory::TOPOLOGY).unwrap();
    for rule in topology.retention.iter_mut().filter(|r| r.aggregate == "order") {
        rule.closed_for = Some("1s".into());
    }
    let js = async_nats::jetstream::new(factory.client.clone());
    let archiver = Archiver::open(factory.client.clone(), &topology).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Act
    let report =
        archiver.run(&RunOptions { aggregate_type: Some("order".into()), dry_run: false }, |_| {}).await.unwrap();

    // Assert: o-1 keeps its last event hot, o-2 (open) all of its events; reads are unchanged
    let hot = |id: &'static str| {
        let js = js.clone();
        async move {
            let info =
                js.get_stream("EVENTS").await.unwrap().info_with_subjects(format!("evt.order.{id}")).await.unwrap();
            info.map(|r| r.unwrap().1).collect::<Vec<_>>().await[0]
        }
    };
    assert_eq!((report.types["order"].compacted, hot("o-1").await), (1, 1), "{report:?}");
    assert_eq!(hot("o-2").await as usize, before.1.versions.len());
    assert_eq!((readings(&store, "order", "o-1").await, readings(&store, "order", "o-2").await), before);
    // A closed order still refuses what it refused, at its version.
    let cancel = factory.send("cmd.order.o-1.cancel", r#"{"reason": "late"}"#).await;
    assert!(cancel.error_code().is_some(), "{cancel:?}");
}

#[tokio::test]
async fn a_declared_tail_stays_hot_and_status_counts_bytes_per_type() {
    // Arrange: 150 events on one stock item (snapshot at 100); the rule keeps 10 more
    let factory = Factory::start_without(&["archiver"]).await;
    receive(&factory, "bolt@main", 150).await;
    let mut topology = Topology::parse(factory::TOPOLOGY).unwrap();
    for rule in topology.retention.iter_mut().filter(|r| r.aggregate == "stock") {
        rule.tail = 10;
    }
    let js = async_nats::jetstream::new(factory.client.clone());
    let archiver = Archiver::open(factory.client.clone(), &topology).await.unwrap();
    archive_caught_up(&archiver).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Act
    let report = archiver.run(&RunOptions::default(), |_| {}).await.unwrap();
    let mut status = archiver.status().await.unwrap();
    archiver.count_bytes(&mut status).await.unwrap();

    // Assert: events 1..=90 left; 91..=150 stay hot (the 10 before the snapshot's and the 50 after)
    assert_eq!(report.types["stock"].purged, 90, "{report:?}");
    let stock = &status.types["stock"];
    assert_eq!((stock.hot.events, stock.archived.events), (60, 150));
    let (hot, archived) = (stock.hot.bytes.unwrap(), stock.archived.bytes.unwrap());
    assert!(hot > 0 && archived > hot * 2, "hot {hot} B, archived {archived} B");
    let store = EventStore::new(factory.client.clone(), Default::default());
    assert_eq!(store.read("evt.stock.bolt@main", 1, usize::MAX).await.unwrap().len(), 150);
    let consumers = js.get_stream("EVENTS").await.unwrap().info().await.unwrap().state.consumer_count;
    assert_eq!(consumers, 2 + 5, "the saga's, the notifier's and the views': counting left none behind");
}
