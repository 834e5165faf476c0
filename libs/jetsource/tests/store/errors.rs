use jetsource::{AggregateId, CommandContext, IdError, RepositoryConfig};

use crate::support::{BinCommand, Env, stream_messages};

#[tokio::test]
async fn a_bad_aggregate_id_is_refused_before_anything_is_published() {
    let env = Env::start().await;
    let mut refused = Vec::new();
    for bad in ["", "a.b", "evt.>", "*", "has space", "x\ny", &"x".repeat(129)] {
        refused.push(AggregateId::new(bad).expect_err(bad));
    }
    assert!(matches!(refused[1], IdError::BadCharacter { found: '.', .. }));
    assert_eq!(stream_messages(&env.client).await, 0);
}

#[tokio::test]
async fn a_malformed_command_id_is_invalid_before_anything_is_published() {
    let env = Env::start().await;
    let repo = env.repository(RepositoryConfig::default());
    let bin = AggregateId::new("ok").unwrap();

    let err = repo.execute(&bin, BinCommand::Receive { qty: 1 }, &CommandContext::with_command_id("has space")).await;

    assert_eq!(err.unwrap_err().code(), jetsource::ErrorCode::Invalid);
    assert_eq!(stream_messages(&env.client).await, 0);
}
