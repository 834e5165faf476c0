use std::sync::Arc;

use crate::support::Factory;

#[tokio::test]
async fn fifty_concurrent_reservations_for_room_for_ten_grant_exactly_ten() {
    // Arrange: 10 bolts, 50 orders wanting one each, through two stock instances
    let mut factory = Factory::start().await;
    factory.spawn(vec!["stock"], |_| {}).await;
    factory.send("cmd.stock.bolt@main.receive", r#"{"qty": 10}"#).await.ok();
    let factory = Arc::new(factory);

    // Act
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let factory = Arc::clone(&factory);
            tokio::spawn(async move {
                factory.send("cmd.stock.bolt@main.reserve", &format!(r#"{{"qty": 1, "order_id": "o-{i}"}}"#)).await
            })
        })
        .collect();
    let mut granted = 0;
    let mut refused = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match (reply.error_code(), reply.body["reason"].as_str()) {
            (None, _) => granted += 1,
            (Some(422), Some("insufficient_stock")) => refused += 1,
            other => panic!("unexpected answer {other:?}: {reply:?}"),
        }
    }

    // Assert: the replies and the state agree
    assert_eq!((granted, refused), (10, 40));
    let store = jetsource::EventStore::new(factory.client.clone(), Default::default());
    let app = factory::registry::app();
    let kind = app.aggregate_entry("stock").unwrap();
    let id = jetsource::AggregateId::new("bolt@main").unwrap();
    let stock = kind.inspect(&store, &id, jetsource::Until::End, false).await.unwrap();
    assert_eq!(stock["state"]["reservations"].as_object().unwrap().len(), 10);
    assert_eq!(stock["version"], 11);
}

#[tokio::test]
async fn two_stock_instances_share_one_queue_group() {
    let mut factory = Factory::server_only().await;
    factory.spawn(vec!["stock"], |_| {}).await;
    factory.spawn(vec!["stock"], |_| {}).await;

    for i in 0..40 {
        factory.send(&format!("cmd.stock.s{i}@main.receive"), r#"{"qty": 1}"#).await.ok();
    }

    // Each instance answers STATS on the shared subject; collect both.
    let inbox = factory.client.new_inbox();
    let mut replies = factory.client.subscribe(inbox.clone()).await.unwrap();
    factory.client.publish_with_reply("$SRV.STATS.stock", inbox, "".into()).await.unwrap();
    let mut counts = Vec::new();
    while counts.len() < 2 {
        let message = tokio::time::timeout(std::time::Duration::from_secs(5), futures::StreamExt::next(&mut replies))
            .await
            .unwrap()
            .unwrap();
        let stats: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        counts.push(stats["endpoints"][0]["num_requests"].as_u64().unwrap());
    }
    assert_eq!(counts.iter().sum::<u64>(), 40, "{counts:?}");
    assert!(counts.iter().all(|&n| n > 0), "both instances took work: {counts:?}");
}
