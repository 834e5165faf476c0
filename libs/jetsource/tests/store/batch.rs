use jetsource::cloudevents::Attributes;
use jetsource::store::NewEvent;
use jetsource::{CommandContext, Metadata, RepositoryConfig, StoreError};

use crate::support::{BinCommand, Env, id, stored, stream_messages};

pub fn new_event(command_id: &str, index: usize, version: u64, qty: u64) -> NewEvent {
    NewEvent::new(
        Attributes {
            id: format!("{command_id}:{index}"),
            source: "/shop/tests".into(),
            event_type: "shop.bin.Received".into(),
            subject: "raw".into(),
            time: "2026-11-27T10:00:00Z".into(),
            schema_version: 2,
            aggregate_version: Some(version),
            metadata: Metadata { command_id: command_id.into(), ..Default::default() },
        },
        serde_json::to_vec(&serde_json::json!({"qty": qty, "source": "raw"})).unwrap().into(),
    )
}

async fn a_multi_event_command_commits_as_one_contiguous_batch(env: Env) {
    let repo = env.repository(RepositoryConfig::default());
    let ctx = CommandContext::with_command_id("cmd-many");

    let outcome = repo.execute(&id("bolt@main"), BinCommand::ReceiveMany(vec![1, 2, 3]), &ctx).await.unwrap();

    assert_eq!(outcome.events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3]);
    let events = stored(&env.store, "evt.bin.bolt@main").await;
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [outcome.stream_seq - 2, outcome.stream_seq - 1, outcome.stream_seq]);
    let ids: Vec<String> = events.iter().map(|e| e.attributes().unwrap().id).collect();
    assert_eq!(ids, ["cmd-many:0", "cmd-many:1", "cmd-many:2"]);
}

async fn a_batch_whose_expectation_fails_writes_nothing(env: Env) {
    // Arrange: the subject already holds one event
    let subject = "evt.bin.raw";
    let first = env.store.append(subject, 0, vec![new_event("c1", 0, 1, 1)]).await.unwrap();
    let before = stream_messages(&env.client).await;

    // Act: a three-event batch that still expects an empty subject
    let batch: Vec<NewEvent> = (0..3).map(|i| new_event("c2", i, 1 + i as u64, 5)).collect();
    let result = env.store.append(subject, 0, batch.clone()).await;

    // Assert
    assert!(matches!(result, Err(StoreError::Conflict { expected: 0, .. })), "{result:?}");
    assert_eq!(stream_messages(&env.client).await, before, "no message of the batch was stored");
    assert_eq!(env.store.last_seq(subject).await.unwrap(), first.last_seq);

    // and the same batch with the right expectation lands whole
    let landed = env.store.append(subject, first.last_seq, batch).await.unwrap();
    assert_eq!(landed.last_seq - landed.first_seq, 2);
    assert_eq!(stored(&env.store, subject).await.len(), 4);
}

crate::support::on_r1_and_r3!(
    a_multi_event_command_commits_as_one_contiguous_batch,
    a_batch_whose_expectation_fails_writes_nothing,
);
