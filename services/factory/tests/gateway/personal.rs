//! Crypto-shredding end to end: an order's requester contact is personal data of its customer,
//! sealed before it is stored anywhere, opened in answers; forgetting the customer (HTTP, or
//! `factory forget`) erases it from history, time travel, snapshots and views, and nothing
//! else changes. The server's store directory, the archive included, never holds it in plain.

use std::path::Path;
use std::time::Duration;

use factory_domain::order::Order;
use jetsource::{AggregateId, EventStore, Repository, RepositoryConfig, SnapshotStore};
use serde_json::json;

use crate::support::Stack;

const NAME: &str = "Ada Lovelace";
const EMAIL: &str = "ada.lovelace@example.org";

/// The files under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

async fn archived(stack: &Stack) {
    let js = async_nats::jetstream::new(stack.client.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let events = js.get_stream("EVENTS").await.unwrap().cached_info().state.last_sequence;
        let archive = js.get_stream("ARCHIVE").await.unwrap();
        if archive.cached_info().sources.first().is_some_and(|s| s.lag == 0)
            && archive.cached_info().state.messages >= events
        {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "the archive did not catch up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn forgetting_a_customer_erases_their_contact_everywhere_and_nothing_else() {
    // Arrange: two orders of two customers, their contacts given; a snapshot of one
    let stack = Stack::start().await;
    stack.command("/v1/commands/product/widget/define", r#"{"name": "W", "bom": [{"sku": "bolt", "qty": 1}]}"#).await;
    let plan = |customer: &str, name: &str, email: &str| {
        json!({"product_id": "widget", "qty": 1, "warehouse": "main",
               "requester": {"customer": customer, "name": name, "email": email}})
        .to_string()
    };
    let planned = stack.command("/v1/commands/order/o-1/plan", &plan("c-42", NAME, EMAIL)).await;
    stack.command("/v1/commands/order/o-2/plan", &plan("c-7", "Grace Hopper", "grace@example.org")).await;
    stack.command("/v1/commands/order/o-1/cancel", r#"{"reason": "changed their mind"}"#).await;
    let store = EventStore::new(stack.client.clone(), Default::default());
    let js = async_nats::jetstream::new(stack.client.clone());
    let snapshots = SnapshotStore::open(&js, "snapshots").await.unwrap();
    let repo = Repository::<Order>::new(store.clone(), Some(snapshots.clone()), RepositoryConfig::default());
    repo.replay(&AggregateId::new("o-1").unwrap()).await.unwrap(); // writes a snapshot
    tokio::time::sleep(Duration::from_millis(300)).await;
    archived(&stack).await;
    let token = planned["stream_seq"].to_string();
    let contact = json!({"name": NAME, "email": EMAIL});
    let erased = json!({"$subject": "c-42", "$erased": true});

    // Answers open the contact; no file of the server holds it in plain, though they hold the
    // customer id (in the event stream and in the archive)
    let state = stack.get("/v1/aggregates/order/o-1").await.json();
    assert_eq!(state["state"]["contact"], contact, "{state}");
    let history = stack.get("/v1/aggregates/order/o-1/events").await.json();
    assert_eq!(history["events"][0]["data"]["contact"], contact);
    let view = stack.call("GET", "/v1/views/orders/o-1", &[("Consistency-Token", &token)], b"").await.json();
    assert_eq!(view["contact"], contact, "{view}");
    let dir = stack.server.dir();
    let holding_id = files_holding(dir, "c-42");
    assert!(
        holding_id.iter().any(|f| f.contains("EVENTS")) && holding_id.iter().any(|f| f.contains("ARCHIVE")),
        "{holding_id:?}"
    );
    assert_eq!((files_holding(dir, NAME), files_holding(dir, EMAIL)), (vec![], vec![]));

    // Act
    let forgot = stack.post("/v1/data-subjects/c-42/forget", "").await;
    let again = stack.post("/v1/data-subjects/c-42/forget", "").await;
    let invalid = stack.post("/v1/data-subjects/c%2042/forget", "").await;

    // Assert: history, time travel, the snapshot and the view (also rebuilt) show it erased
    assert_eq!((forgot.status, forgot.json()["forgotten"].clone()), (200, json!(true)), "{forgot:?}");
    assert_eq!(again.json()["forgotten"], false);
    assert_eq!((invalid.status, invalid.code()), (400, "invalid".to_owned()), "{invalid:?}");
    let state = stack.get("/v1/aggregates/order/o-1").await.json();
    assert_eq!(
        (state["state"]["contact"].clone(), state["state"]["status"].clone()),
        (erased.clone(), json!("cancelled"))
    );
    assert_eq!(state["state"]["customer"], "c-42", "the pseudonym stays");
    let at_first = stack.get("/v1/aggregates/order/o-1?version=1").await.json();
    assert_eq!(at_first["state"]["contact"], erased);
    let history = stack.get("/v1/aggregates/order/o-1/events").await.json();
    assert_eq!(history["events"][0]["data"]["contact"], erased);
    assert_eq!(history["events"][1]["data"]["reason"], "changed their mind", "nothing else changes");
    let from_snapshot = repo.load(&AggregateId::new("o-1").unwrap()).await.unwrap();
    let stored = serde_json::to_value(&from_snapshot.state.contact).unwrap();
    assert!(stored["$sealed"].is_string(), "the snapshot holds it sealed: {stored}");
    let mut opened = serde_json::to_value(&from_snapshot.state).unwrap();
    store.reveal(&mut opened).await.unwrap();
    assert_eq!(opened["contact"], erased);
    let view = stack.get("/v1/views/orders/o-1").await.json();
    assert_eq!(view["contact"], erased, "{view}");
    let other = stack.get("/v1/aggregates/order/o-2").await.json();
    assert_eq!(other["state"]["contact"], json!({"name": "Grace Hopper", "email": "grace@example.org"}));
    let rebuild = stack.post("/v1/projections/orders/rebuild", "").await;
    assert_eq!(rebuild.status, 200, "{rebuild:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = stack.get("/v1/projections").await.json();
        let orders = status["views"].as_array().unwrap().iter().find(|v| v["view"] == "orders").unwrap().clone();
        if orders["version"] == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no switch: {orders}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let view = stack.get("/v1/views/orders/o-1").await.json();
    assert_eq!(view["contact"], erased, "{view}");
    assert_eq!((files_holding(dir, NAME), files_holding(dir, EMAIL)), (vec![], vec![]));

    // The forgotten customer orders again: the new contact is stored erased (their key is not
    // recreated), and their old values still read erased rather than fail
    stack.command("/v1/commands/order/o-3/plan", &plan("c-42", NAME, EMAIL)).await;
    let again = stack.get("/v1/aggregates/order/o-3").await.json();
    assert_eq!(again["state"]["contact"], erased, "{again}");
    let history = stack.get("/v1/aggregates/order/o-1/events").await.json();
    assert_eq!(history["events"][0]["data"]["contact"], erased);
    archived(&stack).await;
    assert_eq!((files_holding(dir, NAME), files_holding(dir, EMAIL)), (vec![], vec![]));

    // `factory forget` does the same from a terminal
    let forget = |subject: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_factory"))
            .args(["forget", subject, "--nats-url", &stack.server.url()])
            .output()
            .unwrap()
    };
    let first = forget("c-7");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("forgot c-7"));
    let second = forget("c-7");
    assert!(!second.status.success() && String::from_utf8_lossy(&second.stderr).contains("has no key"));
    let other = stack.get("/v1/aggregates/order/o-2").await.json();
    assert_eq!(other["state"]["contact"], json!({"$subject": "c-7", "$erased": true}));
}
