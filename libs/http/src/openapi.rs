//! The OpenAPI 3.1 document, generated from the application's registry: one operation per
//! public command with the JSON Schema of its body (from `#[derive(Command)]`), the aggregate
//! types and views as enums, and the security requirement of the configured authentication.
//! What does not come from the registry (the shape of replies, problems, status, history) is
//! the template `openapi.json` beside this crate.

use jetsource_runtime::App;
use serde_json::{Map, Value, json};

/// The template: every route, with the generic command route the registry expands.
pub const TEMPLATE: &str = include_str!("../openapi.json");

/// The generic command route of the template.
const COMMAND_ROUTE: &str = "/v1/commands/{type}/{id}/{command}";

/// The common id rule (`docs/contracts/nats.md`).
const GENERIC_ID: &str = "^[A-Za-z0-9_@-]{1,128}$";

/// What the edge accepts of each parameter, as the document says it: the server refuses
/// nothing a document-valid request carries for its shape.
fn constrain(doc: &mut Value) {
    let command_id = jetsource_runtime::wire::COMMAND_ID_PATTERN;
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for item in paths.values_mut() {
        let Some(methods) = item.as_object_mut() else { continue };
        for op in methods.values_mut() {
            let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else { continue };
            for p in params.iter_mut() {
                let schema = match (p["in"].as_str().unwrap_or_default(), p["name"].as_str().unwrap_or_default()) {
                    ("header", "Idempotency-Key") | ("path", "command_id" | "subject") => {
                        json!({"type": "string", "pattern": command_id})
                    }
                    ("header", "If-Match") => {
                        json!({"type": "string", "pattern": r#"^(\*|(W/)?"[0-9]{1,19}"|[0-9]{1,19})$"#})
                    }
                    ("header", "Consistency-Token") => {
                        json!({"type": "integer", "minimum": 0, "maximum": 9_007_199_254_740_991_u64})
                    }
                    ("header", "traceparent") => {
                        json!({"type": "string", "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"})
                    }
                    ("path", "id") => json!({"type": "string", "pattern": GENERIC_ID}),
                    ("path", "key") => json!({"type": "string", "pattern": GENERIC_ID}),
                    ("query", "limit") => json!({"type": "integer", "minimum": 1, "maximum": 1000}),
                    ("query", "version") => {
                        json!({"type": "integer", "minimum": 0, "maximum": 9_007_199_254_740_991_u64})
                    }
                    ("query", "from") => json!({"type": "integer", "minimum": 0, "maximum": 9_007_199_254_740_991_u64}),
                    ("query", "at") => json!({"type": "string", "format": "date-time"}),
                    ("query", "service") => json!({"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"}),
                    ("query", "trace_id") => json!({"type": "string", "pattern": "^[0-9a-fA-F]{32}$"}),
                    _ => continue,
                };
                p["schema"] = schema;
            }
        }
    }
    if let Some(body) =
        doc["paths"]["/v1/projections/{view}/{action}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
            .as_object_mut()
    {
        body.insert("additionalProperties".into(), false.into());
        body.insert(
            "properties".into(),
            json!({"subject": {"type": "string", "pattern": "^evt\\.[a-z0-9-]{1,64}\\.[A-Za-z0-9_@-]{1,128}$",
                "description": "retry: only this aggregate's subject"}}),
        );
    }
}

/// The path of one command's operation.
pub fn command_path(aggregate_type: &str, command: &str) -> String {
    format!("/v1/commands/{aggregate_type}/{{id}}/{command}")
}

/// The document for `app`; `authenticated` says whether callers must present credentials.
pub fn document(app: &App, authenticated: bool) -> Value {
    let mut doc: Value = serde_json::from_str(TEMPLATE).unwrap_or_else(|_| json!({"openapi": "3.1.0", "paths": {}}));
    constrain(&mut doc);
    // The generic routes take what the common id rule describes; a type or view whose ids have a
    // rule of their own (stock: `<sku>@<warehouse>`) is documented by its own paths only.
    let generic = |pattern: &str| pattern == GENERIC_ID;
    let types: Vec<Value> =
        app.aggregates().iter().filter(|a| generic(a.id_pattern())).map(|a| a.aggregate_type().into()).collect();
    let views: Vec<Value> = app.views().iter().filter(|v| generic(v.key_pattern())).map(|v| v.name().into()).collect();
    let listed: Vec<Value> = app.view_names().into_iter().map(Value::from).collect();
    set_enum(&mut doc, COMMAND_ROUTE, "post", "type", &types);
    let every_type: Vec<Value> = app.aggregates().iter().map(|a| a.aggregate_type().into()).collect();
    set_enum(&mut doc, "/v1/aggregates/{type}", "get", "type", &every_type);
    set_enum(&mut doc, "/v1/tail", "get", "type", &every_type);
    for path in ["/v1/aggregates/{type}/{id}", "/v1/aggregates/{type}/{id}/events"] {
        set_enum(&mut doc, path, "get", "type", &types);
    }
    set_enum(&mut doc, "/v1/views/{view}/{key}", "get", "view", &views);
    set_enum(&mut doc, "/v1/views/{view}", "get", "view", &listed);
    set_enum(&mut doc, "/v1/projections/{view}/{action}", "post", "view", &listed);
    set_enum(&mut doc, "/v1/projections/{view}/parked", "get", "view", &listed);
    for aggregate in app.aggregates() {
        let kind = aggregate.aggregate_type();
        for (template, concrete) in [
            ("/v1/aggregates/{type}/{id}", format!("/v1/aggregates/{kind}/{{id}}")),
            ("/v1/aggregates/{type}/{id}/events", format!("/v1/aggregates/{kind}/{{id}}/events")),
        ] {
            let mut op = doc["paths"][template]["get"].clone();
            if op.is_null() {
                continue;
            }
            op["operationId"] =
                format!("{kind}.{}", if concrete.ends_with("events") { "history" } else { "state" }).into();
            op["tags"] = json!([kind]);
            if let Some(params) = op["parameters"].as_array_mut() {
                params.retain(|p| p["name"] != "type");
                for p in params.iter_mut().filter(|p| p["name"] == "id") {
                    p["schema"] = json!({"type": "string", "pattern": aggregate.id_pattern()});
                }
            }
            doc["paths"][concrete] = json!({ "get": op });
        }
    }
    let names: Vec<String> = app
        .aggregates()
        .iter()
        .map(|a| {
            let commands: Vec<&str> = a.commands().iter().filter(|c| !c.internal).map(|c| c.name).collect();
            format!("{}: {}", a.aggregate_type(), commands.join(", "))
        })
        .collect();
    if let Some(param) = param_mut(&mut doc, COMMAND_ROUTE, "post", "command") {
        param["description"] = format!("command name ({})", names.join("; ")).into();
    }
    let template = doc["paths"][COMMAND_ROUTE]["post"].clone();
    let mut defs = Map::new();
    for aggregate in app.aggregates() {
        for spec in aggregate.commands().iter().filter(|c| !c.internal) {
            let mut op = template.clone();
            let kind = aggregate.aggregate_type();
            op["operationId"] = format!("{kind}.{}", spec.name).into();
            op["summary"] = if spec.description.is_empty() {
                format!("{kind} {} (role operator)", spec.name).into()
            } else {
                format!("{kind} {}: {} (role operator)", spec.name, spec.description).into()
            };
            op["tags"] = json!([kind]);
            if let Some(params) = op["parameters"].as_array_mut() {
                params.retain(|p| !matches!(p["name"].as_str(), Some("type" | "command")));
                for p in params.iter_mut().filter(|p| p["name"] == "id") {
                    p["schema"] = json!({"type": "string", "pattern": aggregate.id_pattern()});
                }
            }
            let schema = body_schema((spec.schema)(), &mut defs);
            let example: Value = serde_json::from_str(spec.example).unwrap_or_else(|_| json!({}));
            // An empty body counts as `{}`: it may be left out only when nothing is required.
            let required = schema["required"].as_array().is_some_and(|r| !r.is_empty());
            op["requestBody"] = json!({
                "required": required,
                "content": {"application/json": {"schema": schema, "examples": {spec.name: {"value": example}}}}
            });
            if let Some(responses) = op["responses"].as_object_mut() {
                responses.remove(if spec.asynchronous { "200" } else { "202" });
            }
            doc["paths"][command_path(kind, spec.name)] = json!({ "post": op });
        }
    }
    for view in app.views() {
        let name = view.name();
        let mut schema = body_schema(view.doc_schema(), &mut defs);
        // Every document carries the stream sequence it reflects.
        schema["properties"]["seq"] =
            json!({"type": "integer", "minimum": 0, "description": "the stream sequence it reflects"});
        if let Some(required) = schema["required"].as_array_mut() {
            required.push("seq".into());
        } else {
            schema["required"] = json!(["seq"]);
        }
        let title = format!("{name} document");
        schema["title"] = title.into();
        for (template, concrete, page) in [
            ("/v1/views/{view}/{key}", format!("/v1/views/{name}/{{key}}"), false),
            ("/v1/views/{view}", format!("/v1/views/{name}"), true),
        ] {
            let mut op = doc["paths"][template]["get"].clone();
            if op.is_null() {
                continue;
            }
            op["operationId"] = format!("{name}.{}", if page { "list" } else { "get" }).into();
            op["tags"] = json!(["views"]);
            if let Some(params) = op["parameters"].as_array_mut() {
                params.retain(|p| p["name"] != "view");
                for p in params.iter_mut().filter(|p| p["name"] == "key") {
                    p["schema"] = json!({"type": "string", "pattern": view.key_pattern()});
                }
            }
            let media = &mut op["responses"]["200"]["content"]["application/json"]["schema"];
            *media = if page {
                json!({"type": "object", "required": ["items", "next"], "properties": {
                    "items": {"type": "array", "items": schema.clone()},
                    "next": {"type": ["string", "null"]}
                }})
            } else {
                schema.clone()
            };
            doc["paths"][concrete] = json!({ "get": op });
        }
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (name, def) in defs {
            schemas.entry(name).or_insert(def);
        }
    }
    document_headers(&mut doc);
    if !authenticated {
        doc["security"] = json!([]);
    }
    doc
}

/// The response headers every API answer carries: `x-trace-id` on everything but the
/// operational endpoints, `Retry-After` where the edge asks to come back later (429, 503).
fn document_headers(doc: &mut Value) {
    let operational = ["/healthz", "/readyz", "/metrics", "/openapi.json"];
    let Some(paths) = doc["paths"].as_object_mut() else { return };
    for (path, item) in paths.iter_mut() {
        let traced = !operational.contains(&path.as_str());
        let Some(methods) = item.as_object_mut() else { continue };
        for op in methods.values_mut() {
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else { continue };
            for (status, response) in responses.iter_mut() {
                if traced {
                    response["headers"]["x-trace-id"] = json!({"description": "the trace of this request (32 hex digits)", "schema": {"type": "string"}});
                }
                if matches!(status.as_str(), "429" | "503") {
                    response["headers"]["Retry-After"] =
                        json!({"description": "seconds to wait before trying again", "schema": {"type": "integer"}});
                }
            }
        }
    }
}

/// A command body schema for the document: its `$defs` move to `components/schemas` and
/// references follow them; integers are bounded to what JSON carries exactly (2^53 − 1).
pub fn body_schema(schema: jetsource::schemars::Schema, defs: &mut Map<String, Value>) -> Value {
    let mut value = serde_json::to_value(schema).unwrap_or_else(|_| json!({"type": "object"}));
    bound_integers(&mut value);
    if let Some(object) = value.as_object_mut() {
        object.remove("$schema");
        if let Some(Value::Object(found)) = object.remove("$defs") {
            for (name, mut def) in found {
                rewrite_refs(&mut def);
                defs.insert(name, def);
            }
        }
    }
    rewrite_refs(&mut value);
    value
}

/// Integers without a maximum get the largest one JSON numbers carry exactly.
fn bound_integers(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map
                .get("type")
                .is_some_and(|t| t == "integer" || t.as_array().is_some_and(|a| a.contains(&"integer".into())))
                && !map.contains_key("maximum")
            {
                map.insert("maximum".into(), 9_007_199_254_740_991_u64.into());
            }
            map.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref")
                && let Some(name) = reference.strip_prefix("#/$defs/")
            {
                *reference = format!("#/components/schemas/{name}");
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

fn param_mut<'a>(doc: &'a mut Value, path: &str, method: &str, name: &str) -> Option<&'a mut Value> {
    doc["paths"][path][method]["parameters"].as_array_mut()?.iter_mut().find(|p| p["name"] == name)
}

fn set_enum(doc: &mut Value, path: &str, method: &str, name: &str, values: &[Value]) {
    if let Some(param) = param_mut(doc, path, method, name) {
        param["schema"]["enum"] = Value::Array(values.to_vec());
    }
}
