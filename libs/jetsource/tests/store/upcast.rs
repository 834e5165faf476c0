use async_nats::HeaderMap;
use jetsource::{RepositoryConfig, StoreError};

use crate::support::{BinEvent, Env, id};

/// Publishes an event as a foreign client would: plain headers, no framework.
async fn publish_raw(env: &Env, subject: &str, headers: &[(&str, &str)], body: &str) {
    let js = async_nats::jetstream::new(env.client.clone());
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, *value);
    }
    js.publish_with_headers(subject.to_owned(), map, body.to_owned().into()).await.unwrap().await.unwrap();
}

async fn a_v1_event_published_raw_is_read_back_upcast_to_v2(env: Env) {
    // Arrange
    let headers = [
        ("ce-specversion", "1.0"),
        ("ce-id", "legacy-1"),
        ("ce-source", "/legacy/importer"),
        ("ce-type", "shop.bin.Received"),
        ("ce-subject", "old@main"),
        ("ce-time", "2020-01-01T00:00:00Z"),
        ("ce-datacontenttype", "application/json"),
        ("ce-schemaversion", "1"),
    ];
    publish_raw(&env, "evt.bin.old@main", &headers, r#"{"quantity": 7}"#).await;
    let repo = env.repository(RepositoryConfig::default());

    // Act
    let events = repo.events(&id("old@main"), 1, 10).await.unwrap();
    let loaded = repo.load(&id("old@main")).await.unwrap();

    // Assert
    assert_eq!(events[0].event, BinEvent::Received { qty: 7, source: "unknown".into() });
    assert_eq!(events[0].attributes.schema_version, 1, "stored as written");
    assert_eq!((loaded.state.on_hand, loaded.version), (7, 1));
}

async fn unknown_types_and_undecodable_payloads_are_typed_errors_naming_subject_and_seq(env: Env) {
    let repo = env.repository(RepositoryConfig::default());
    publish_raw(&env, "evt.bin.odd", &[("ce-type", "shop.bin.Teleported")], "{}").await;
    publish_raw(&env, "evt.bin.bad", &[("ce-type", "shop.bin.Taken")], r#"{"qty": "lots"}"#).await;
    publish_raw(&env, "evt.bin.junk", &[("ce-type", "shop.bin.Taken")], "not json").await;

    match repo.load(&id("odd")).await {
        Err(StoreError::UnknownEventType { subject, seq: 1, event_type }) => {
            assert_eq!((subject.as_str(), event_type.as_str()), ("evt.bin.odd", "shop.bin.Teleported"));
        }
        other => panic!("expected UnknownEventType, got {other:?}"),
    }
    for (agg, seq) in [("bad", 2), ("junk", 3)] {
        match repo.load(&id(agg)).await {
            Err(e @ StoreError::Undecodable { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&format!("evt.bin.{agg} seq {seq}")), "{text}");
            }
            other => panic!("expected Undecodable for {agg}, got {other:?}"),
        }
    }
}

crate::support::on_r1_and_r3!(
    a_v1_event_published_raw_is_read_back_upcast_to_v2,
    unknown_types_and_undecodable_payloads_are_typed_errors_naming_subject_and_seq,
);
