//! What the views must say, computed independently: every aggregate loaded from the event
//! store with the domain's own fold, and the command ids read from the events' headers.

use std::collections::{BTreeMap, BTreeSet};

use async_nats::Client;
use factory_domain::order::Order;
use factory_domain::product::Product;
use factory_domain::stock::Stock;
use futures::TryStreamExt;
use jetsource::{AggregateId, EventStore, Repository, RepositoryConfig};
use serde_json::Value;

use crate::support::Factory;

async fn ids(client: &Client, aggregate_type: &str) -> Vec<String> {
    let js = async_nats::jetstream::new(client.clone());
    let stream = js.get_stream("EVENTS").await.unwrap();
    let info = stream.info_with_subjects(format!("evt.{aggregate_type}.>")).await.unwrap();
    let mut subjects: Vec<String> =
        info.try_collect::<Vec<(String, usize)>>().await.unwrap().into_iter().map(|(s, _)| s).collect();
    subjects.sort();
    subjects.iter().map(|s| s.splitn(3, '.').nth(2).unwrap().to_owned()).collect()
}

fn repo<A: jetsource::Aggregate>(client: &Client) -> Repository<A> {
    Repository::new(
        EventStore::new(client.clone(), Default::default()),
        None,
        RepositoryConfig { cache_capacity: 0, ..Default::default() },
    )
}

/// Waits until every view reflects the stream's last sequence.
pub async fn caught_up(factory: &Factory) {
    let js = async_nats::jetstream::new(factory.client.clone());
    let last = js.get_stream("EVENTS").await.unwrap().info().await.unwrap().state.last_sequence;
    for view in ["stock", "warehouse", "orders", "products", "commands"] {
        let reply =
            factory.query_with(&format!("qry.{view}"), r#"{"limit": 1}"#, &[("Min-Seq", &last.to_string())]).await;
        assert!(reply.error_code().is_none(), "{view} did not catch up with seq {last}: {reply:?}");
    }
}

/// Every document of a view, by key, through the paging API.
pub async fn all_docs(factory: &Factory, view: &str) -> BTreeMap<String, Value> {
    let mut docs = BTreeMap::new();
    let mut after: Option<String> = None;
    // Small pages, to exercise paging; bigger ones for the commands of a long load (a view
    // without index lists by scanning its bucket, once per page).
    let limit = if view == "commands" { 250 } else { 7 };
    loop {
        let body = match &after {
            Some(after) => serde_json::json!({ "limit": limit, "after": after }),
            None => serde_json::json!({ "limit": limit }),
        };
        let page = factory.query(&format!("qry.{view}"), &body.to_string()).await;
        let page = page.ok();
        for item in page["items"].as_array().unwrap() {
            let key = match view {
                "stock" => format!("{}@{}", item["sku"].as_str().unwrap(), item["warehouse"].as_str().unwrap()),
                "warehouse" => item["warehouse"].as_str().unwrap().to_owned(),
                "orders" => item["order_id"].as_str().unwrap().to_owned(),
                "products" => item["product_id"].as_str().unwrap().to_owned(),
                _ => item["command_id"].as_str().unwrap().to_owned(),
            };
            assert!(docs.insert(key, item.clone()).is_none(), "a key listed twice");
        }
        match page["next"].as_str() {
            Some(next) => after = Some(next.to_owned()),
            None => return docs,
        }
    }
}

/// Checks every view against the fold of the event log.
pub async fn assert_views_equal_fold(factory: &Factory) {
    caught_up(factory).await;
    let client = &factory.client;

    let stock_view = all_docs(factory, "stock").await;
    let mut warehouses: BTreeMap<String, BTreeMap<String, (u64, u64)>> = BTreeMap::new();
    let stock_ids = ids(client, "stock").await;
    assert_eq!(stock_view.keys().cloned().collect::<Vec<_>>(), stock_ids);
    for id in &stock_ids {
        let loaded = repo::<Stock>(client).load(&AggregateId::new(id.as_str()).unwrap()).await.unwrap();
        let doc = &stock_view[id];
        assert_eq!(
            (doc["on_hand"].as_u64(), doc["reserved"].as_u64()),
            (Some(loaded.state.on_hand), Some(loaded.state.reserved())),
            "stock {id}"
        );
        assert_eq!(doc["available"].as_u64(), Some(loaded.state.available()), "stock {id}");
        assert_eq!(
            (doc["version"].as_u64(), doc["seq"].as_u64()),
            (Some(loaded.version), Some(loaded.last_seq)),
            "stock {id}"
        );
        let (sku, warehouse) = id.split_once('@').unwrap();
        warehouses
            .entry(warehouse.to_owned())
            .or_default()
            .insert(sku.to_owned(), (loaded.state.on_hand, loaded.state.available()));
    }

    let warehouse_view = all_docs(factory, "warehouse").await;
    assert_eq!(warehouse_view.keys().cloned().collect::<BTreeSet<_>>(), warehouses.keys().cloned().collect());
    for (warehouse, skus) in &warehouses {
        for (sku, (on_hand, available)) in skus {
            let line = &warehouse_view[warehouse]["skus"][sku];
            assert_eq!(
                (line["on_hand"].as_u64(), line["available"].as_u64()),
                (Some(*on_hand), Some(*available)),
                "{sku} in {warehouse}"
            );
        }
    }

    let orders_view = all_docs(factory, "orders").await;
    let order_ids = ids(client, "order").await;
    assert_eq!(orders_view.keys().cloned().collect::<Vec<_>>(), order_ids);
    for id in &order_ids {
        let loaded = repo::<Order>(client).load(&AggregateId::new(id.as_str()).unwrap()).await.unwrap();
        let doc = &orders_view[id];
        assert_eq!(doc["status"].as_str(), Some(loaded.state.status.as_str()), "order {id}");
        assert_eq!(
            (doc["qty"].as_u64(), doc["version"].as_u64()),
            (Some(loaded.state.qty), Some(loaded.version)),
            "order {id}"
        );
    }

    let products_view = all_docs(factory, "products").await;
    let product_ids = ids(client, "product").await;
    assert_eq!(products_view.keys().cloned().collect::<Vec<_>>(), product_ids);
    for id in &product_ids {
        let loaded = repo::<Product>(client).load(&AggregateId::new(id.as_str()).unwrap()).await.unwrap();
        let doc = &products_view[id];
        assert_eq!(
            (doc["retired"].as_bool(), doc["bom"].as_array().map(Vec::len)),
            (Some(loaded.state.retired), Some(loaded.state.bom.len())),
            "product {id}"
        );
    }

    // Every event's command id, from the stream's headers.
    let store = EventStore::new(client.clone(), Default::default());
    let mut commands: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for id in &stock_ids {
        collect_commands(&store, &format!("evt.stock.{id}"), &mut commands).await;
    }
    for id in &order_ids {
        collect_commands(&store, &format!("evt.order.{id}"), &mut commands).await;
    }
    for id in &product_ids {
        collect_commands(&store, &format!("evt.product.{id}"), &mut commands).await;
    }
    let commands_view = all_docs(factory, "commands").await;
    assert_eq!(commands_view.keys().cloned().collect::<BTreeSet<_>>(), commands.keys().cloned().collect());
    for (id, seqs) in &commands {
        let listed: Vec<u64> =
            commands_view[id]["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(&listed, seqs, "command {id}: each event once");
    }
}

async fn collect_commands(store: &EventStore, subject: &str, commands: &mut BTreeMap<String, Vec<u64>>) {
    for event in store.read(subject, 1, usize::MAX).await.unwrap() {
        let id = jetsource::cloudevents::command_id(&event.headers).to_owned();
        commands.entry(id).or_default().push(event.seq);
    }
}
