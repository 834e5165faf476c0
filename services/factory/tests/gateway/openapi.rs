//! The OpenAPI document says what the server really does: real responses of every route are
//! checked against it (route, status, content type, body schema).

use serde_json::Value;

use crate::support::{Resp, Stack};

/// method, path, headers, body
type Exchange<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>);

/// A small JSON Schema validator for the keywords the document uses.
fn validate(root: &Value, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/components/schemas/");
        return validate(root, &root["components"]["schemas"][name], value, at);
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        return Err(format!("{at}: {value} is not {expected}"));
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return Err(format!("{at}: {value} is not one of {options:?}"));
    }
    if let Some(types) = schema.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let actual = match value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        if !types.iter().any(|t| *t == actual || (*t == "number" && actual == "integer")) {
            return Err(format!("{at}: {actual} where {types:?} is documented"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64())
        && n < min
    {
        return Err(format!("{at}: {n} < {min}"));
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), value.as_f64())
        && n > max
    {
        return Err(format!("{at}: {n} > {max}"));
    }
    if let Value::Object(object) = value {
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let name = required.as_str().unwrap_or_default();
            if !object.contains_key(name) {
                return Err(format!("{at}: required {name:?} is missing"));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        for (key, member) in object {
            match properties.and_then(|p| p.get(key)) {
                Some(sub) => validate(root, sub, member, &format!("{at}.{key}"))?,
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => return Err(format!("{at}: {key:?} is not documented")),
                    Some(sub @ Value::Object(_)) => validate(root, sub, member, &format!("{at}.{key}"))?,
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(item)) = (value, schema.get("items")) {
        for (i, element) in items.iter().enumerate() {
            validate(root, item, element, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

/// The documented operation matching a concrete path.
fn operation<'a>(spec: &'a Value, method: &str, path: &str) -> Option<&'a Value> {
    let path = path.split('?').next().unwrap_or(path);
    let parts: Vec<&str> = path.split('/').collect();
    spec["paths"].as_object()?.iter().find_map(|(template, item)| {
        let pattern: Vec<&str> = template.split('/').collect();
        let matches =
            pattern.len() == parts.len() && pattern.iter().zip(&parts).all(|(p, s)| p.starts_with('{') || p == s);
        matches.then(|| item.get(method.to_lowercase())).flatten()
    })
}

fn check(spec: &Value, method: &str, path: &str, resp: &Resp) -> Result<(), String> {
    let op = operation(spec, method, path).ok_or_else(|| format!("{method} {path} is not documented"))?;
    let documented = op["responses"]
        .get(resp.status.to_string())
        .ok_or_else(|| format!("{method} {path}: status {} is not documented", resp.status))?;
    let content_type = resp.header("content-type").unwrap_or_default().split(';').next().unwrap_or_default().to_owned();
    let media = documented["content"]
        .get(&content_type)
        .ok_or_else(|| format!("{method} {path} {}: content type {content_type:?} is not documented", resp.status))?;
    if content_type.ends_with("json") {
        let body: Value =
            serde_json::from_slice(&resp.body).map_err(|e| format!("{method} {path}: body is not JSON: {e}"))?;
        validate(spec, &media["schema"], &body, &format!("{method} {path} {}", resp.status))?;
    }
    for header in
        documented.get("headers").and_then(Value::as_object).map(|h| h.keys().collect::<Vec<_>>()).unwrap_or_default()
    {
        if matches!(header.as_str(), "ETag" | "Location" | "Consistency-Token")
            && resp.header(&header.to_lowercase()).is_none()
        {
            return Err(format!("{method} {path} {}: documented header {header} is missing", resp.status));
        }
    }
    Ok(())
}

#[tokio::test]
async fn real_responses_of_every_route_match_the_openapi_document() {
    // Arrange
    let stack = Stack::start().await;
    let spec: Value = stack.get("/openapi.json").await.json();
    let json = [("content-type", "application/json")];
    stack
        .command("/v1/commands/product/widget/define", r#"{"name": "Widget", "bom": [{"sku": "bolt", "qty": 4}]}"#)
        .await;
    let received = stack.command("/v1/commands/stock/bolt@main/receive", r#"{"qty": 100}"#).await;
    let id = received["command_id"].as_str().unwrap().to_owned();
    let token = received["stream_seq"].to_string();
    stack.command("/v1/commands/order/o-1/plan", r#"{"product_id": "widget", "qty": 1, "warehouse": "main"}"#).await;
    stack.command("/v1/commands/order/o-2/plan", r#"{"product_id": "widget", "qty": 1000, "warehouse": "main"}"#).await;
    let short = stack.command("/v1/commands/order/o-2/start", "{}").await;
    let failed = short["command_id"].as_str().unwrap().to_owned();
    let big = vec![b' '; 300 * 1024];

    // Act: every route, success and failure
    let exchanges: Vec<Exchange> = vec![
        ("POST", "/v1/commands/stock/bolt@main/ship".into(), json.to_vec(), br#"{"qty": 1}"#.to_vec()),
        ("POST", "/v1/commands/order/o-1/start".into(), json.to_vec(), b"{}".to_vec()),
        ("POST", "/v1/commands/stock/bolt@main/ship".into(), json.to_vec(), br#"{"qty": 1000}"#.to_vec()),
        ("POST", "/v1/commands/stock/bolt@main/ship".into(), json.to_vec(), br#"{"qty": "x"}"#.to_vec()),
        ("POST", "/v1/commands/gizmo/g/make".into(), json.to_vec(), b"{}".to_vec()),
        (
            "POST",
            "/v1/commands/stock/bolt@main/ship".into(),
            vec![("content-type", "application/json"), ("if-match", "\"99\"")],
            br#"{"qty": 1}"#.to_vec(),
        ),
        ("POST", "/v1/commands/stock/bolt@main/ship".into(), json.to_vec(), big),
        ("POST", "/v1/commands/stock/bolt@main/ship".into(), vec![("content-type", "text/plain")], b"1".to_vec()),
        ("GET", format!("/v1/commands/{id}"), vec![], vec![]),
        ("GET", "/v1/commands/nope".into(), vec![], vec![]),
        ("GET", format!("/v1/commands/{id}/events"), vec![], vec![]),
        ("GET", "/v1/views/stock/bolt@main".into(), vec![("consistency-token", token.as_str())], vec![]),
        ("GET", "/v1/views/stock/nut@main".into(), vec![], vec![]),
        ("GET", "/v1/views/stock?limit=2".into(), vec![], vec![]),
        ("GET", "/v1/views/stock?limit=0".into(), vec![], vec![]),
        ("GET", "/v1/aggregates/stock/bolt@main".into(), vec![], vec![]),
        ("GET", "/v1/aggregates/stock/bolt@main?version=1".into(), vec![], vec![]),
        ("GET", "/v1/aggregates/stock/nut@main".into(), vec![], vec![]),
        ("GET", "/v1/aggregates/stock/bolt@main/events?limit=1".into(), vec![], vec![]),
        ("GET", "/v1/aggregates/stock/bolt@main/events?limit=9999".into(), vec![], vec![]),
        ("GET", "/v1/projections".into(), vec![], vec![]),
        ("GET", "/v1/projections/stock/parked".into(), vec![], vec![]),
        ("GET", "/v1/aggregates/stock?prefix=b".into(), vec![], vec![]),
        ("GET", "/v1/aggregates/nope".into(), vec![], vec![]),
        ("GET", "/v1/projections/nope/parked".into(), vec![], vec![]),
        ("POST", "/v1/projections/stock/retry".into(), json.to_vec(), b"{}".to_vec()),
        ("POST", "/v1/projections/stock/explode".into(), json.to_vec(), b"{}".to_vec()),
        ("GET", format!("/v1/commands/{failed}/events"), vec![], vec![]),
        ("GET", format!("/v1/commands/{failed}"), vec![], vec![]),
        ("GET", "/v1/logs?level=warn&limit=5".into(), vec![], vec![]),
        ("GET", "/v1/logs?level=loud".into(), vec![], vec![]),
        ("GET", "/status".into(), vec![], vec![]),
        ("GET", "/healthz".into(), vec![], vec![]),
        ("GET", "/readyz".into(), vec![], vec![]),
        ("GET", "/metrics".into(), vec![], vec![]),
        ("GET", "/openapi.json".into(), vec![], vec![]),
    ];
    let mut failures = Vec::new();
    let mut statuses = std::collections::BTreeSet::new();
    for (method, path, headers, body) in &exchanges {
        let resp = stack.call(method, path, headers, body).await;
        statuses.insert(resp.status);
        if let Err(e) = check(&spec, method, path, &resp) {
            failures.push(e);
        }
    }

    // Assert
    assert!(failures.is_empty(), "responses that do not match /openapi.json:\n{}", failures.join("\n"));
    assert!(statuses.is_superset(&[200, 202, 400, 404, 412, 413, 415, 422].into()), "{statuses:?}");
    // The failed order's status (read after its event stream ended) carries its error.
    let status = stack.get(&format!("/v1/commands/{failed}")).await.json();
    assert_eq!(status["status"], "failed", "{status}");
    assert_eq!(status["errors"][0]["reason"], "insufficient_stock", "{status}");
}

#[test]
fn the_validator_rejects_what_the_document_does_not_allow() {
    let spec: Value = serde_json::from_str(jetsource_http::OPENAPI).unwrap();
    let reply = |status: &str| serde_json::json!({"command_id": "c", "aggregate_type": "stock", "aggregate_id": "a@b", "version": 1, "stream_seq": 1, "status": status, "events": []});
    let schema = serde_json::json!({"$ref": "#/components/schemas/CommandReply"});
    assert!(validate(&spec, &schema, &reply("succeeded"), "").is_ok());
    assert!(validate(&spec, &schema, &reply("maybe"), "").is_err());
    let mut extra = reply("succeeded");
    extra["surprise"] = 1.into();
    assert!(validate(&spec, &schema, &extra, "").is_err());
    assert!(operation(&spec, "GET", "/v1/views/stock/bolt@main").is_some());
    assert!(operation(&spec, "PUT", "/v1/views/stock/bolt@main").is_none());
}

#[tokio::test]
async fn the_served_document_is_generated_from_the_registry_with_a_typed_body_for_every_command() {
    // Arrange
    let stack = Stack::start().await;
    let app = factory::registry::app();

    // Act
    let served: Value = stack.get("/openapi.json").await.json();

    // Assert: the served document is the registry's, and says every command's body
    assert_eq!(served, jetsource_http::openapi::document(&app, false), "served document drifted from the registry");
    let mut documented = 0;
    for aggregate in app.aggregates() {
        for spec in aggregate.commands() {
            let path = jetsource_http::openapi::command_path(aggregate.aggregate_type(), spec.name);
            let op = &served["paths"][&path]["post"];
            if spec.internal {
                assert!(op.is_null(), "{path}: internal commands have no HTTP route");
                continue;
            }
            let media = &op["requestBody"]["content"]["application/json"];
            let schema = &media["schema"];
            assert_eq!(schema["type"], "object", "{path}: {schema}");
            assert_eq!(schema["additionalProperties"], false, "{path}: bodies are strict");
            let example = &media["examples"][spec.name]["value"];
            validate(&served, schema, example, &path).unwrap_or_else(|e| panic!("example of {path}: {e}"));
            let reply = if spec.asynchronous { "202" } else { "200" };
            assert!(op["responses"].get(reply).is_some(), "{path} documents {reply}");
            documented += 1;
        }
    }
    let concrete = served["paths"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|p| p.starts_with("/v1/commands/") && p.split('/').nth(3).is_some_and(|t| !t.starts_with('{')))
        .count();
    assert_eq!(concrete, documented, "every documented command is a registered one");
    for view in app.view_names() {
        let doc = &served["paths"][format!("/v1/views/{view}/{{key}}")]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        assert_eq!(doc["properties"]["seq"]["type"], "integer", "{view}: {doc}");
        assert!(doc["properties"].as_object().unwrap().len() > 1, "{view}: the document's fields are typed");
    }
    let wrong = serde_json::json!({"qty": "ten"});
    let ship = &served["paths"]["/v1/commands/stock/{id}/ship"]["post"]["requestBody"]["content"]["application/json"];
    assert!(validate(&served, &ship["schema"], &wrong, "ship").is_err(), "the ship body types qty");
}
