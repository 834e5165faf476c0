use std::time::Duration;

use jetsource::snapshot::SnapshotRecord;
use jetsource::{CommandContext, RepositoryConfig, SnapshotStore, Until};
use serde_json::Value;

use crate::support::{Bin, BinCommand, Env, id, stored};

/// Polls the snapshot of `agg` until `accept` holds (snapshots are written in the background).
async fn snapshot_where(env: &Env, agg: &str, accept: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(raw) = env.snapshots.get("bin", &id(agg)).await.unwrap() {
            let value: Value = serde_json::from_slice(&raw).unwrap();
            if accept(&value) {
                return value;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no matching snapshot of {agg}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn snapshots_are_taken_every_n_events_and_loads_agree_with_a_full_replay(env: Env) {
    let repo = env.repository(RepositoryConfig { snapshot_every: 10, ..Default::default() });
    let bin = id("snap@main");
    for qty in 1..=25 {
        repo.execute(&bin, BinCommand::Receive { qty }, &CommandContext::new()).await.unwrap();
    }

    let snapshot = snapshot_where(&env, "snap@main", |s| s["version"] == 20).await;
    repo.clear_cache();
    let from_snapshot = repo.load(&bin).await.unwrap();
    let no_snapshots = jetsource::Repository::<Bin>::new(env.store.clone(), None, RepositoryConfig::default());
    let replayed = no_snapshots.load(&bin).await.unwrap();

    assert_eq!(snapshot["state"]["on_hand"], (1..=20).sum::<u64>());
    assert_eq!(from_snapshot.state, replayed.state);
    assert_eq!((from_snapshot.version, from_snapshot.last_seq), (replayed.version, replayed.last_seq));
    // The load started from the snapshot: it replayed the 5 events after it, not all 25.
    let (_, after_snapshot) = repo.load_until(&bin, jetsource::Until::End).await.unwrap();
    let (_, without) = no_snapshots.load_until(&bin, jetsource::Until::End).await.unwrap();
    assert_eq!((after_snapshot, without), (5, 25));
}

async fn a_snapshot_of_an_old_state_version_is_ignored_and_replaced(env: Env) {
    // Arrange: 6 events, then a snapshot claiming the latest seq but with an old state version
    // and a state that is wrong on purpose.
    let repo = env.repository(RepositoryConfig { snapshot_every: 5, ..Default::default() });
    let bin = id("legacy@main");
    let mut last = None;
    for _ in 0..6 {
        last = Some(repo.execute(&bin, BinCommand::Receive { qty: 1 }, &CommandContext::new()).await.unwrap());
    }
    let last = last.unwrap();
    let forged = SnapshotRecord {
        state_version: 0,
        version: last.version,
        stream_seq: last.stream_seq,
        at: None,
        recent: Default::default(),
        state: Bin { on_hand: 9_999, ..Default::default() },
    };
    env.snapshots.put("bin", &bin, serde_json::to_vec(&forged).unwrap().into()).await.unwrap();

    // Act
    repo.clear_cache();
    let loaded = repo.load(&bin).await.unwrap();

    // Assert: replayed, and a fresh snapshot of the current state version replaced the old one
    assert_eq!((loaded.state.on_hand, loaded.version), (6, 6));
    let fresh = snapshot_where(&env, "legacy@main", |s| s["state_version"] == 1).await;
    assert_eq!((fresh["version"].as_u64(), fresh["state"]["on_hand"].as_u64()), (Some(6), Some(6)));
}

async fn an_undecodable_snapshot_is_ignored(env: Env) {
    let repo = env.repository(RepositoryConfig::default());
    let bin = id("garbled@main");
    repo.execute(&bin, BinCommand::Receive { qty: 4 }, &CommandContext::new()).await.unwrap();
    env.snapshots.put("bin", &bin, "{not json".into()).await.unwrap();

    repo.clear_cache();
    assert_eq!(repo.load(&bin).await.unwrap().state.on_hand, 4);
}

async fn a_retry_after_a_snapshot_still_answers_the_first_outcome(env: Env) {
    let repo = env.repository(RepositoryConfig { snapshot_every: 3, ..Default::default() });
    let bin = id("late@main");
    let ctx = CommandContext::with_command_id("early-command");
    let first = repo.execute(&bin, BinCommand::Receive { qty: 1 }, &ctx).await.unwrap();
    for _ in 0..7 {
        repo.execute(&bin, BinCommand::Receive { qty: 1 }, &CommandContext::new()).await.unwrap();
    }
    snapshot_where(&env, "late@main", |s| s["version"] == 6).await;

    repo.clear_cache();
    let again = repo.execute(&bin, BinCommand::Receive { qty: 1 }, &ctx).await.unwrap();

    assert!(again.duplicate);
    assert_eq!(again.stream_seq, first.stream_seq);
    assert_eq!(stored(&env.store, "evt.bin.late@main").await.len(), 8);
}

async fn time_travel_loads_the_state_at_a_version_or_an_instant(env: Env) {
    let repo = env.repository(RepositoryConfig { snapshot_every: 2, ..Default::default() });
    let bin = id("travel@main");
    for qty in [1, 10, 100, 1000] {
        repo.execute(&bin, BinCommand::Receive { qty }, &CommandContext::new()).await.unwrap();
    }
    snapshot_where(&env, "travel@main", |s| s["version"] == 4).await;
    let second_stored_at = stored(&env.store, "evt.bin.travel@main").await[1].stored_at;

    let (at_v3, _) = repo.load_until(&bin, Until::Version(3)).await.unwrap();
    let (at_time, _) = repo.load_until(&bin, Until::Time(second_stored_at)).await.unwrap();
    let (at_v0, _) = repo.load_until(&bin, Until::Version(0)).await.unwrap();

    assert_eq!((at_v3.state.on_hand, at_v3.version), (111, 3));
    assert_eq!((at_time.state.on_hand, at_time.version), (11, 2));
    assert_eq!((at_v0.state.on_hand, at_v0.version), (0, 0));
}

#[tokio::test]
async fn snapshot_keys_keep_ids_with_at_signs_apart() {
    assert_eq!(SnapshotStore::key("stock", &id("bolt@main")), "stock.bolt=main");
}

async fn a_snapshot_ahead_of_the_stream_is_noticed_on_conflict_and_replaced(env: Env) {
    // Arrange: a snapshot claiming a history the stream does not have (as after the stream was
    // recreated or restored from an older backup)
    let repo = env.repository(RepositoryConfig::default());
    let bin = id("restored@main");
    repo.execute(&bin, BinCommand::Receive { qty: 2 }, &CommandContext::new()).await.unwrap();
    let forged = SnapshotRecord {
        state_version: 1,
        version: 50,
        stream_seq: 9_999,
        at: None,
        recent: Default::default(),
        state: Bin { on_hand: 9_999, ..Default::default() },
    };
    env.snapshots.put("bin", &bin, serde_json::to_vec(&forged).unwrap().into()).await.unwrap();
    repo.clear_cache();

    // Act
    let outcome = repo.execute(&bin, BinCommand::Receive { qty: 3 }, &CommandContext::new()).await.unwrap();

    // Assert: the true history decided, and the snapshot no longer lies
    assert_eq!(outcome.version, 2);
    let fresh = snapshot_where(&env, "restored@main", |s| s["stream_seq"].as_u64() < Some(9_999)).await;
    assert_eq!(fresh["state"]["on_hand"], 2);
    repo.clear_cache();
    assert_eq!(repo.load(&bin).await.unwrap().state.on_hand, 5);
}

crate::support::on_r1_and_r3!(
    snapshots_are_taken_every_n_events_and_loads_agree_with_a_full_replay,
    a_snapshot_of_an_old_state_version_is_ignored_and_replaced,
    an_undecodable_snapshot_is_ignored,
    a_retry_after_a_snapshot_still_answers_the_first_outcome,
    time_travel_loads_the_state_at_a_version_or_an_instant,
    a_snapshot_ahead_of_the_stream_is_noticed_on_conflict_and_replaced,
);
