//! Rules that span aggregates, end to end over NATS (ADR 18): stock transfers as one command
//! over two stock aggregates, unique product names and products in use, each kept by a
//! conditional append. The transfer and name races run on R1 and on an R3 cluster.

use std::sync::Arc;

use serde_json::Value;

use crate::support::Factory;

const WAREHOUSES: [&str; 4] = ["north", "south", "east", "west"];

async fn stock(factory: &Factory, id: &str) -> Value {
    let store = jetsource::EventStore::new(factory.client.clone(), Default::default());
    let app = factory::registry::app();
    let id = jetsource::AggregateId::new(id).unwrap();
    app.aggregate_entry("stock").unwrap().inspect(&store, &id, jetsource::Until::End, true).await.unwrap()
}

/// A factory with two stock instances, on one server or on a 3-node cluster.
async fn with_two_stock_services(cluster: bool) -> Factory {
    let mut factory = if cluster { Factory::cluster_only().await } else { Factory::server_only().await };
    factory.spawn(vec!["stock", "catalog"], |_| {}).await;
    factory.spawn(vec!["stock", "catalog"], |_| {}).await;
    factory
}

async fn transfers_conserve_the_total(cluster: bool) {
    // Arrange: 100 bolts in each of four warehouses
    let factory = Arc::new(with_two_stock_services(cluster).await);
    for warehouse in WAREHOUSES {
        factory.send(&format!("cmd.stock.bolt@{warehouse}.receive"), r#"{"qty": 100}"#).await.ok();
    }

    // Act: 200 concurrent transfers of 1..=40 between random warehouses
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let from = WAREHOUSES[(next() % 4) as usize];
            let to = WAREHOUSES[((next() % 3) as usize + 1 + WAREHOUSES.iter().position(|w| *w == from).unwrap()) % 4];
            let qty = 1 + next() % 40;
            let factory = Arc::clone(&factory);
            tokio::spawn(async move {
                let body = format!(r#"{{"qty": {qty}, "to": "{to}"}}"#);
                factory.send(&format!("cmd.stock.bolt@{from}.transfer"), &body).await
            })
        })
        .collect();
    let mut moved = 0;
    let mut refused = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        match (reply.error_code(), reply.code(), reply.body["reason"].as_str()) {
            (None, _, _) => moved += 1,
            (Some(422), "rejected", Some("insufficient_stock")) | (Some(409), "conflict", _) => refused += 1,
            other => panic!("unexpected answer {other:?}: {reply:?}"),
        }
    }

    // Assert: the total on hand is exactly what was received; every landed transfer wrote one
    // departure and one arrival; no warehouse ever went below zero
    let mut total = 0;
    let (mut departures, mut arrivals) = (0, 0);
    for warehouse in WAREHOUSES {
        let stock = stock(&factory, &format!("bolt@{warehouse}")).await;
        total += stock["state"]["on_hand"].as_u64().unwrap();
        let mut level: i64 = 0;
        for event in stock["events"].as_array().unwrap() {
            let qty = event["data"]["qty"].as_i64().unwrap_or(0);
            match event["type"].as_str().unwrap().rsplit('.').next().unwrap() {
                "StockReceived" | "StockTransferredIn" => level += qty,
                "StockTransferredOut" => level -= qty,
                other => panic!("unexpected event {other}"),
            }
            assert!(level >= 0, "bolt@{warehouse} went below zero");
            departures += usize::from(event["type"].as_str().unwrap().ends_with("StockTransferredOut"));
            arrivals += usize::from(event["type"].as_str().unwrap().ends_with("StockTransferredIn"));
        }
    }
    assert_eq!(total, 400, "{moved} transfers landed, {refused} refused");
    assert_eq!((departures, arrivals), (moved, moved));
    assert!(moved >= 50, "only {moved} of 200 transfers landed");
}

#[tokio::test]
async fn two_hundred_concurrent_transfers_conserve_the_total_on_r1() {
    transfers_conserve_the_total(false).await;
}

#[tokio::test]
async fn two_hundred_concurrent_transfers_conserve_the_total_on_r3() {
    transfers_conserve_the_total(true).await;
}

#[tokio::test]
async fn a_transfer_is_refused_to_its_own_warehouse_or_beyond_the_stock_and_writes_nothing() {
    // Arrange
    let mut factory = Factory::server_only().await;
    factory.spawn(vec!["stock"], |_| {}).await;
    factory.send("cmd.stock.nut@north.receive", r#"{"qty": 5}"#).await.ok();

    // Act
    let same = factory.send("cmd.stock.nut@north.transfer", r#"{"qty": 1, "to": "north"}"#).await;
    let beyond = factory.send("cmd.stock.nut@north.transfer", r#"{"qty": 6, "to": "south"}"#).await;
    let bad = factory.send("cmd.stock.nut@north.transfer", r#"{"qty": 1, "to": "so.uth"}"#).await;
    let landed = factory.send("cmd.stock.nut@north.transfer", r#"{"qty": 5, "to": "south"}"#).await;

    // Assert
    assert_eq!((same.error_code(), same.body["reason"].as_str()), (Some(422), Some("same_warehouse")));
    assert_eq!((beyond.error_code(), beyond.body["reason"].as_str()), (Some(422), Some("insufficient_stock")));
    assert_eq!((bad.error_code(), bad.code()), (Some(400), "invalid"), "{bad:?}");
    assert_eq!(landed.ok()["version"], 2, "the refused transfers wrote nothing");
    assert_eq!(stock(&factory, "nut@south").await["version"], 1);
    assert_eq!(stock(&factory, "nut@north").await["state"]["on_hand"], 0);
}

async fn one_name_one_product(cluster: bool) {
    // Arrange
    let factory = Arc::new(with_two_stock_services(cluster).await);

    // Act: fifty products race for one name, written in different cases
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let factory = Arc::clone(&factory);
            let name = if i % 2 == 0 { "Gizmo" } else { " gIZMO" };
            tokio::spawn(async move {
                let body = format!(r#"{{"name": "{name}", "bom": [{{"sku": "bolt", "qty": 1}}]}}"#);
                factory.send(&format!("cmd.product.g-{i}.define"), &body).await
            })
        })
        .collect();
    let mut winners = Vec::new();
    for (i, task) in tasks.into_iter().enumerate() {
        let reply = task.await.unwrap();
        match (reply.error_code(), reply.body["reason"].as_str()) {
            (None, _) => winners.push(i),
            (Some(422), Some("name_taken")) | (Some(409), None) => {}
            other => panic!("unexpected answer {other:?}: {reply:?}"),
        }
    }

    // Assert: exactly one product holds the name; retiring it frees the name
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    let taken = factory.send("cmd.product.late.define", r#"{"name": "GIZMO", "bom": []}"#).await;
    assert_eq!(taken.body["reason"], "name_taken", "{taken:?}");
    assert!(taken.body["message"].as_str().unwrap().contains(&format!("g-{}", winners[0])), "{taken:?}");
    factory.send(&format!("cmd.product.g-{}.retire", winners[0]), "").await.ok();
    factory.send("cmd.product.late.define", r#"{"name": "GIZMO", "bom": []}"#).await.ok();
}

#[tokio::test]
async fn of_fifty_racing_defines_with_one_name_exactly_one_lands_on_r1() {
    one_name_one_product(false).await;
}

#[tokio::test]
async fn of_fifty_racing_defines_with_one_name_exactly_one_lands_on_r3() {
    one_name_one_product(true).await;
}

#[tokio::test]
async fn a_product_in_a_bill_of_materials_is_not_retired_and_a_retired_one_is_not_used() {
    // Arrange: `frame` is a sub-assembly in the bill of materials of `bike`
    let mut factory = Factory::server_only().await;
    factory.spawn(vec!["catalog"], |_| {}).await;
    factory.send("cmd.product.frame.define", r#"{"name": "Frame", "bom": [{"sku": "tube", "qty": 3}]}"#).await.ok();
    factory.send("cmd.product.bike.define", r#"{"name": "Bike", "bom": [{"sku": "frame", "qty": 1}]}"#).await.ok();

    // Act / Assert: in use, it stays
    let in_use = factory.send("cmd.product.frame.retire", "").await;
    assert_eq!((in_use.error_code(), in_use.body["reason"].as_str()), (Some(422), Some("in_use")), "{in_use:?}");

    // once no bill of materials lists it, it retires, and cannot be listed again
    factory.send("cmd.product.bike.change-bom", r#"{"bom": [{"sku": "tube", "qty": 4}]}"#).await.ok();
    factory.send("cmd.product.frame.retire", "").await.ok();
    let reuse =
        factory.send("cmd.product.trike.define", r#"{"name": "Trike", "bom": [{"sku": "frame", "qty": 1}]}"#).await;
    assert_eq!(reuse.body["reason"], "component_retired", "{reuse:?}");
    let change = factory.send("cmd.product.bike.change-bom", r#"{"bom": [{"sku": "frame", "qty": 1}]}"#).await;
    assert_eq!(change.body["reason"], "component_retired", "{change:?}");
}
