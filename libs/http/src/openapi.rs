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

/// The path of one command's operation.
pub fn command_path(aggregate_type: &str, command: &str) -> String {
    format!("/v1/commands/{aggregate_type}/{{id}}/{command}")
}

/// The document for `app`; `authenticated` says whether callers must present credentials.
pub fn document(app: &App, authenticated: bool) -> Value {
    let mut doc: Value = serde_json::from_str(TEMPLATE).unwrap_or_else(|_| json!({"openapi": "3.1.0", "paths": {}}));
    let types: Vec<Value> = app.aggregate_types().into_iter().map(Value::from).collect();
    let views: Vec<Value> = app.view_names().into_iter().map(Value::from).collect();
    set_enum(&mut doc, COMMAND_ROUTE, "post", "type", &types);
    for path in ["/v1/aggregates/{type}/{id}", "/v1/aggregates/{type}/{id}/events"] {
        set_enum(&mut doc, path, "get", "type", &types);
    }
    for path in ["/v1/views/{view}/{key}", "/v1/views/{view}"] {
        set_enum(&mut doc, path, "get", "view", &views);
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
            }
            let schema = body_schema((spec.schema)(), &mut defs);
            let example: Value = serde_json::from_str(spec.example).unwrap_or_else(|_| json!({}));
            op["requestBody"] = json!({
                "required": false,
                "content": {"application/json": {"schema": schema, "examples": {spec.name: {"value": example}}}}
            });
            if let Some(responses) = op["responses"].as_object_mut() {
                responses.remove(if spec.asynchronous { "200" } else { "202" });
            }
            doc["paths"][command_path(kind, spec.name)] = json!({ "post": op });
        }
    }
    if let Some(schemas) = doc["components"]["schemas"].as_object_mut() {
        for (name, def) in defs {
            schemas.entry(name).or_insert(def);
        }
    }
    if !authenticated {
        doc["security"] = json!([]);
    }
    doc
}

/// A command body schema for the document: its `$defs` move to `components/schemas` and
/// references follow them.
pub fn body_schema(schema: jetsource::schemars::Schema, defs: &mut Map<String, Value>) -> Value {
    let mut value = serde_json::to_value(schema).unwrap_or_else(|_| json!({"type": "object"}));
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
