use jetsource::{AggregateId, CommandContext, IdError, RepositoryConfig};

use crate::support::{BinCommand, Env, stream_messages};

#[tokio::test]
async fn a_bad_aggregate_id_is_refused_naming_what_is_wrong_and_the_edge_cases_are_accepted() {
    // Every id that could widen a subject or an OCC filter is refused, saying why
    let env = Env::start().await;
    let refused: Vec<IdError> = ["", "a.b", "evt.>", "*", "has space", "x\ny", &"x".repeat(129)]
        .into_iter()
        .map(|bad| AggregateId::new(bad).expect_err(bad))
        .collect();
    assert_eq!(refused[0], IdError::Empty);
    assert!(matches!(refused[1], IdError::BadCharacter { found: '.', position: 1 }));
    assert!(matches!(refused[2], IdError::BadCharacter { found: '.', position: 3 }));
    assert!(matches!(refused[3], IdError::BadCharacter { found: '*', position: 0 }));
    assert!(matches!(refused[4], IdError::BadCharacter { found: ' ', position: 3 }));
    assert!(matches!(refused[5], IdError::BadCharacter { found: '\n', position: 1 }));
    assert_eq!(refused[6], IdError::TooLong { len: 129 });

    // and the ids at the edge of the rules are accepted and written to their own subjects
    let repo = env.repository(RepositoryConfig::default());
    let edge = ["a", "sku-1_x@main", &"y".repeat(128)];
    for good in edge {
        let id = AggregateId::new(good).expect(good);
        repo.execute(&id, BinCommand::Receive { qty: 1 }, &CommandContext::new()).await.expect(good);
        assert_eq!(crate::support::stored(&env.store, &format!("evt.bin.{good}")).await.len(), 1, "{good}");
    }
    assert_eq!(stream_messages(&env.client).await, edge.len() as u64);
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
