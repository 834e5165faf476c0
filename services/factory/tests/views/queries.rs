use std::time::Duration;

use crate::support::Factory;

#[tokio::test]
async fn a_query_with_min_seq_sees_the_command_just_answered() {
    let factory = Factory::start().await;
    for qty in 1..=20 {
        // Act: command, then at once the query pinned to its stream sequence
        let reply = factory.send("cmd.stock.bolt@main.receive", &format!(r#"{{"qty": {qty}}}"#)).await;
        let seq = reply.ok()["stream_seq"].as_u64().unwrap();
        let doc = factory.query_with("qry.stock.bolt@main", "", &[("Min-Seq", &seq.to_string())]).await;
        // Assert
        let doc = doc.ok();
        assert!(doc["seq"].as_u64().unwrap() >= seq);
        assert_eq!(doc["on_hand"].as_u64(), Some((1..=qty).sum()));
    }
}

#[tokio::test]
async fn a_min_seq_no_view_reaches_answers_consistency_timeout() {
    let mut factory = Factory::server_only().await;
    factory
        .spawn(factory::app::all_services().into_iter().filter(|s| *s != "gateway").collect(), |c| {
            c.projector.consistency_wait = Duration::from_millis(300)
        })
        .await;
    factory.send("cmd.stock.bolt@main.receive", r#"{"qty": 1}"#).await.ok();

    let reply = factory.query_with("qry.stock.bolt@main", "", &[("Min-Seq", "1000000")]).await;

    assert_eq!((reply.error_code(), reply.code()), (Some(504), "consistency_timeout"), "{reply:?}");
}

#[tokio::test]
async fn a_view_reading_other_subjects_is_still_consistent_with_a_later_seq() {
    // The products view never sees stock events; Min-Seq of a stock command must not hang it.
    let factory = Factory::start().await;
    factory.send("cmd.product.widget.define", r#"{"name": "W", "bom": []}"#).await.ok();
    let stock = factory.send("cmd.stock.bolt@main.receive", r#"{"qty": 1}"#).await;
    let seq = stock.ok()["stream_seq"].as_u64().unwrap().to_string();

    let product = factory.query_with("qry.products.widget", "", &[("Min-Seq", &seq)]).await;

    assert_eq!(product.ok()["name"], "W");
}

#[tokio::test]
async fn listings_page_by_prefix_limit_and_after() {
    let factory = Factory::start().await;
    let mut last = 0;
    for sku in ["a1", "a2", "a3", "b1", "b2"] {
        last = factory.send(&format!("cmd.stock.{sku}@main.receive"), r#"{"qty": 1}"#).await.ok()["stream_seq"]
            .as_u64()
            .unwrap();
    }
    let min = [("Min-Seq", last.to_string())];
    let min: Vec<(&str, &str)> = min.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let first = factory.query_with("qry.stock", r#"{"prefix": "a", "limit": 2}"#, &min).await;
    let next = first.ok()["next"].as_str().unwrap().to_owned();
    let second = factory.query("qry.stock", &format!(r#"{{"prefix": "a", "limit": 2, "after": "{next}"}}"#)).await;
    let skus = |page: &serde_json::Value| {
        page["items"].as_array().unwrap().iter().map(|i| i["sku"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };

    assert_eq!(skus(first.ok()), ["a1", "a2"]);
    assert_eq!(skus(second.ok()), ["a3"]);
    assert!(second.ok()["next"].is_null());
}

#[tokio::test]
async fn bad_queries_get_their_specific_error() {
    let factory = Factory::start().await;
    for (subject, body, headers, status, code) in [
        ("qry.nope.x", "", vec![], 404, "not_found"),
        ("qry.stock.bolt@main", "", vec![], 404, "not_found"),
        ("qry.stock.bolt", "", vec![], 400, "invalid"),
        ("qry.stock", r#"{"limit": 0}"#, vec![], 400, "invalid"),
        ("qry.stock", r#"{"limit": 5000}"#, vec![], 400, "invalid"),
        ("qry.stock", r#"{"colour": 1}"#, vec![], 400, "invalid"),
        ("qry.stock", "{", vec![], 400, "invalid"),
        ("qry.stock.bolt@main", "", vec![("Min-Seq", "soon")], 400, "invalid"),
        ("projector.rebuild.nope", "", vec![], 404, "not_found"),
        ("projector.explode", "", vec![], 404, "not_found"),
    ] {
        let reply = factory.query_with(subject, body, &headers).await;
        assert_eq!((reply.error_code(), reply.code()), (Some(status), code), "{subject} {body}: {reply:?}");
    }
}
