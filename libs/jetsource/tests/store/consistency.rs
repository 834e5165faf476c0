//! Consistency beyond one aggregate (ADR 18): commands over several aggregates in one atomic
//! batch, and appends conditioned on a tag's events. Each behaviour runs on one server (R1)
//! and on a 3-node cluster with R3 streams, from one test body.

use std::sync::Arc;

use jetsource::store::{Expect, Write};
use jetsource::{CommandContext, CommandError, Repository, RepositoryConfig, StoreError, Tag};

use crate::batch::new_event;
use crate::support::{Bin, BinCommand, Env, id, stored, stream_messages};

/// A provisioned store on R1 or R3, with one repository over it.
struct Nats {
    env: Env,
    repo: Arc<Repository<Bin>>,
}

async fn nats(replicas: usize) -> Nats {
    let env = if replicas == 1 { Env::start().await } else { Env::start_cluster().await };
    let repo = Arc::new(env.repository(RepositoryConfig::default()));
    Nats { env, repo }
}

async fn on_hand(nats: &Nats, bin: &str) -> u64 {
    nats.repo.load(&id(bin)).await.unwrap().state.on_hand
}

async fn moves_conserve_the_total(replicas: usize) {
    // Arrange: three bins of 50, and a second repository (another instance) beside the first
    let nats = nats(replicas).await;
    let bins = ["b0", "b1", "b2"];
    for bin in bins {
        nats.repo.execute(&id(bin), BinCommand::Receive { qty: 50 }, &CommandContext::new()).await.unwrap();
    }
    let other = Arc::new(Repository::<Bin>::new(nats.env.store.clone(), None, RepositoryConfig::default()));

    // Act: 60 concurrent moves of 1..=20 between random bins
    let tasks: Vec<_> = (0..60u64)
        .map(|i| {
            let repo = if i % 2 == 0 { Arc::clone(&nats.repo) } else { Arc::clone(&other) };
            let (from, to) = (bins[(i % 3) as usize], bins[((i / 3 + 1 + i) % 3) as usize]);
            tokio::spawn(async move {
                if from == to {
                    return None;
                }
                let command = BinCommand::Move { qty: 1 + (i * 7) % 20, to: id(to) };
                Some(repo.execute(&id(from), command, &CommandContext::new()).await)
            })
        })
        .collect();
    let mut moved = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Some(Ok(_)) => moved += 1,
            Some(Err(CommandError::Rejected(_) | CommandError::Conflict { .. })) => refused += 1,
            Some(Err(e)) => panic!("unexpected error {e:?}"),
            None => {}
        }
    }

    // Assert: the total is exactly conserved, and every move wrote one event on each side
    let mut total = 0;
    for bin in bins {
        total += on_hand(&nats, bin).await;
    }
    assert_eq!(total, 150, "{moved} moves, {refused} refused");
    assert!(moved > 10, "only {moved} moves landed");
    let mut taken = 0;
    let mut arrived = 0;
    for bin in bins {
        let events = stored(&nats.env.store, &format!("evt.bin.{bin}")).await;
        let versions: Vec<_> = events.iter().map(|e| e.attributes().unwrap().aggregate_version.unwrap()).collect();
        assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>(), "{bin}: versions stay dense");
        for event in events {
            let data: serde_json::Value = serde_json::from_slice(&event.data).unwrap();
            match data["source"].as_str() {
                Some("move") => arrived += 1,
                Some(_) => {}
                None => taken += 1,
            }
        }
    }
    assert_eq!((taken, arrived), (moved, moved));
}

#[tokio::test]
async fn moves_between_bins_conserve_the_total_on_r1() {
    moves_conserve_the_total(1).await;
}

#[tokio::test]
async fn moves_between_bins_conserve_the_total_on_r3() {
    moves_conserve_the_total(3).await;
}

async fn one_label_one_holder(replicas: usize) {
    // Arrange
    let nats = nats(replicas).await;
    let label = id("blue");

    // Act: twenty bins race for one label
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let repo = Arc::clone(&nats.repo);
            let label = label.clone();
            tokio::spawn(async move {
                repo.execute(&id(&format!("bin-{i}")), BinCommand::Label { label }, &CommandContext::new()).await
            })
        })
        .collect();
    let mut holders = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => holders.push(i),
            Err(CommandError::Rejected(e)) => assert_eq!(jetsource::DomainError::reason(&e), "label_taken"),
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }

    // Assert: one holder, one tagged copy, and the holder may label itself again
    assert_eq!(holders.len(), 1, "holders: {holders:?}");
    let tagged = stored(&nats.env.store, &nats.env.store.tag_subject(&Tag::new("label", &label))).await;
    assert_eq!(tagged.len(), 1);
    let holder = id(&format!("bin-{}", holders[0]));
    assert_eq!(tagged[0].attributes().unwrap().subject, holder.as_str());
    nats.repo.execute(&holder, BinCommand::Label { label }, &CommandContext::new()).await.unwrap();
}

#[tokio::test]
async fn of_twenty_racing_claims_of_one_label_exactly_one_lands_on_r1() {
    one_label_one_holder(1).await;
}

#[tokio::test]
async fn of_twenty_racing_claims_of_one_label_exactly_one_lands_on_r3() {
    one_label_one_holder(3).await;
}

#[tokio::test]
async fn a_batch_whose_condition_fails_writes_nothing() {
    // Arrange: a tag subject holding one event, read at that position
    let nats = nats(1).await;
    let tag = nats.env.store.tag_subject(&Tag::new("label", &id("red")));
    let first = nats.env.store.append_all(vec![Write::new(&tag, new_event("c1", 0, 1, 1))]).await.unwrap();
    let stale = Expect { filter: Some(tag.clone()), last_seq: 0 };
    let before = stream_messages(&nats.env.client).await;

    // Act: two aggregates' events, conditioned on the tag as it was before its first event
    let batch = |expect: Expect| {
        vec![
            Write::new("evt.bin.x", new_event("c2", 0, 1, 5)).expecting(Expect { filter: None, last_seq: 0 }),
            Write::new("evt.bin.y", new_event("c2", 1, 1, 5)).expecting(Expect { filter: None, last_seq: 0 }),
            Write::new(&tag, new_event("c2", 2, 1, 5)).expecting(expect),
        ]
    };
    let result = nats.env.store.append_all(batch(stale)).await;

    // Assert: a conflict, and no message of the batch stored
    assert!(matches!(result, Err(StoreError::Conflict { .. })), "{result:?}");
    assert_eq!(stream_messages(&nats.env.client).await, before);
    assert!(stored(&nats.env.store, "evt.bin.x").await.is_empty());

    // and with the position read right, it lands whole
    let fresh = Expect { filter: Some(tag.clone()), last_seq: first.last_seq };
    let landed = nats.env.store.append_all(batch(fresh)).await.unwrap();
    assert_eq!(landed.last_seq - landed.first_seq, 2);
    assert_eq!(stream_messages(&nats.env.client).await, before + 3);
}

#[tokio::test]
async fn a_retried_multi_aggregate_command_writes_once() {
    // Arrange
    let nats = nats(1).await;
    let ctx = CommandContext::with_command_id("move-1");
    nats.repo.execute(&id("src"), BinCommand::Receive { qty: 10 }, &CommandContext::new()).await.unwrap();
    let command = BinCommand::Move { qty: 4, to: id("dst") };

    // Act: the command, then the same command id again on another instance (no shared cache)
    let first = nats.repo.execute(&id("src"), command.clone(), &ctx).await.unwrap();
    let other = Repository::<Bin>::new(nats.env.store.clone(), None, RepositoryConfig::default());
    let again = other.execute(&id("src"), command, &ctx).await.unwrap();

    // Assert: one outcome, one event on each side
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!((again.version, again.stream_seq), (first.version, first.stream_seq));
    assert_eq!(stored(&nats.env.store, "evt.bin.dst").await.len(), 1);
    assert_eq!(stored(&nats.env.store, "evt.bin.src").await.len(), 2);
    assert_eq!((on_hand(&nats, "src").await, on_hand(&nats, "dst").await), (6, 4));
    // The destination's version is dense, and its event names the command
    let dst = stored(&nats.env.store, "evt.bin.dst").await;
    let attributes = dst[0].attributes().unwrap();
    assert_eq!((attributes.aggregate_version, attributes.metadata.command_id.as_str()), (Some(1), "move-1"));
}

/// Counts the conflicts a repository met.
#[derive(Default)]
struct Conflicts(std::sync::atomic::AtomicU64);

impl jetsource::Observer for Conflicts {
    fn conflict(&self, _: &'static str) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_move_back_finds_the_destination_cached_as_the_move_there_left_it() {
    // Arrange
    let nats = nats(1).await;
    let conflicts = Arc::new(Conflicts::default());
    let repo = Repository::<Bin>::new(nats.env.store.clone(), None, RepositoryConfig::default())
        .with_observer(Arc::clone(&conflicts) as Arc<dyn jetsource::Observer>);
    repo.execute(&id("a"), BinCommand::Receive { qty: 10 }, &CommandContext::new()).await.unwrap();
    repo.execute(&id("b"), BinCommand::Receive { qty: 10 }, &CommandContext::new()).await.unwrap();

    // Act: moves back and forth, each writing the aggregate the next one is sent to
    for i in 0..6 {
        let (from, to) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
        repo.execute(&id(from), BinCommand::Move { qty: 1, to: id(to) }, &CommandContext::new()).await.unwrap();
    }

    // Assert: no move met a stale cache, and both sides are where they should be
    assert_eq!(conflicts.0.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!((on_hand(&nats, "a").await, on_hand(&nats, "b").await), (10, 10));
    assert_eq!(stored(&nats.env.store, "evt.bin.a").await.len(), 7);
}

#[tokio::test]
async fn conditions_ride_before_the_batch_writes_their_subject() {
    // Arrange: two labels already hold events
    let nats = nats(1).await;
    for label in ["t1", "t2"] {
        nats.repo.execute(&id(label), BinCommand::Label { label: id(label) }, &CommandContext::new()).await.unwrap();
    }
    let before = stream_messages(&nats.env.client).await;

    // Act: read t1 and t2, write under t2 and t3 (a condition on t2 placed after t2's copy
    // would be refused by the server, whatever the stream held)
    let command = BinCommand::Mark { read: vec![id("t1"), id("t2")], write: vec![id("t2"), id("t3")] };
    let marked = nats.repo.execute(&id("m"), command, &CommandContext::new()).await;

    // Assert: it lands at once, the event and its two copies
    let marked = marked.unwrap();
    assert_eq!(marked.version, 1);
    assert_eq!(stream_messages(&nats.env.client).await, before + 3);
}

#[tokio::test]
async fn a_decision_that_reads_outside_its_scope_is_refused_and_writes_nothing() {
    let nats = nats(1).await;

    let result = nats.repo.execute(&id("p"), BinCommand::Peek { label: id("x") }, &CommandContext::new()).await;

    let error = result.unwrap_err();
    assert!(matches!(&error, CommandError::Internal(m) if m.contains("tag label=x")), "{error:?}");
    assert_eq!(stream_messages(&nats.env.client).await, 0);
}
