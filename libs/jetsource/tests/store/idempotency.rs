use std::sync::Arc;

use jetsource::{CommandContext, RepositoryConfig, StoreError};
use jetsource_testkit::NatsCluster;

use crate::batch::new_event;
use crate::support::{Bin, BinCommand, Env, connect_provisioned, id, stored};

#[tokio::test]
async fn a_retried_command_writes_once_and_answers_its_first_outcome_on_r1() {
    let env = Env::start().await;
    retried_commands_write_once(&env.store, &env.snapshots).await;
}

#[tokio::test]
async fn a_retried_command_writes_once_and_answers_its_first_outcome_on_r3() {
    let cluster = NatsCluster::start();
    let (_client, store, snapshots) = connect_provisioned(&cluster.urls(), 3).await;
    retried_commands_write_once(&store, &snapshots).await;
}

async fn retried_commands_write_once(store: &jetsource::EventStore, snapshots: &jetsource::SnapshotStore) {
    let repo = |cache| {
        let config = RepositoryConfig { cache_capacity: cache, ..Default::default() };
        Arc::new(jetsource::Repository::<Bin>::new(store.clone(), Some(snapshots.clone()), config))
    };
    let bin = id("retry@main");
    let ctx = CommandContext::with_command_id("cmd-retried");

    // A plain retry, through a repository that has the aggregate cached and one that has not.
    let cached = repo(100);
    let first = cached.execute(&bin, BinCommand::ReceiveMany(vec![2, 3]), &ctx).await.unwrap();
    for again in [
        cached.execute(&bin, BinCommand::ReceiveMany(vec![2, 3]), &ctx).await.unwrap(),
        repo(0).execute(&bin, BinCommand::ReceiveMany(vec![2, 3]), &ctx).await.unwrap(),
    ] {
        assert!(!first.duplicate && again.duplicate);
        assert_eq!((again.version, again.stream_seq, &again.events), (first.version, first.stream_seq, &first.events));
    }

    // Two deliveries of the same command racing through separate processes.
    let ctx = CommandContext::with_command_id("cmd-raced");
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let (repo, bin, ctx) = (repo(0), bin.clone(), ctx.clone());
            tokio::spawn(async move { repo.execute(&bin, BinCommand::Receive { qty: 10 }, &ctx).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for racer in racers {
        outcomes.push(racer.await.unwrap().expect("each delivery answers"));
    }
    assert!(outcomes.iter().all(|o| o.stream_seq == outcomes[0].stream_seq), "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| !o.duplicate).count(), 1);

    let events = stored(store, "evt.bin.retry@main").await;
    assert_eq!(events.len(), 3, "2 events of the first command, 1 of the raced one");
    let state = repo(0).load(&bin).await.unwrap().state;
    assert_eq!(state.on_hand, 15);
}

#[tokio::test]
async fn the_server_answers_a_republished_event_differently_on_r1_and_r3() {
    // The raw behaviour the repository copes with (research §1.1): OCC first on R1, dedupe
    // first on R3. Both leave exactly one copy.
    let env = Env::start().await;
    let event = vec![new_event("same", 0, 1, 1)];
    env.store.append("evt.bin.r1", 0, event.clone()).await.unwrap();
    let r1 = env.store.append("evt.bin.r1", 0, event.clone()).await;
    assert!(matches!(r1, Err(StoreError::Conflict { .. })), "{r1:?}");
    assert_eq!(stored(&env.store, "evt.bin.r1").await.len(), 1);

    let cluster = NatsCluster::start();
    let (_client, store, _) = connect_provisioned(&cluster.urls(), 3).await;
    let first = store.append("evt.bin.r3", 0, event.clone()).await.unwrap();
    let again = store.append("evt.bin.r3", 0, event.clone()).await.unwrap();
    assert!(again.duplicate && again.last_seq == first.last_seq, "{again:?}");
    assert_eq!(stored(&store, "evt.bin.r3").await.len(), 1);
}
