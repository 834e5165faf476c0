//! Bounded fuzzing of every parser that takes input from outside (proptest, with shrinking):
//! command bodies, CloudEvents headers, aggregate ids and command subjects, bearer tokens,
//! the topology file and log queries. Each runs a fixed number of generated cases in
//! `make test` (`FUZZ_CASES` raises it). None may panic, and every reject is a typed error
//! naming what is wrong.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use async_nats::HeaderMap;
use factory_domain::order::Order;
use factory_domain::product::Product;
use factory_domain::stock::Stock;
use jetsource::Command as _;
use jetsource::topology::Topology;
use jetsource_http::auth::{AuthError, Authenticator, Role};
use jetsource_http::config::{AuthConfig, JwtConfig, JwtKey, Secret};

fn runner() -> TestRunner {
    let cases = std::env::var("FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(2048);
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// Arbitrary bytes, arbitrary JSON-looking text, and near misses of valid input.
fn text_like(valid: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        ".{0,120}".prop_map(String::into_bytes),
        "\\{(\"[a-z_]{1,10}\": ?(-?[0-9]{1,22}(\\.[0-9]+)?(e[0-9]+)?|\"[^\"]{0,12}\"|null|true|\\[\\]|\\{\\}),? ?){0,4}\\}"
            .prop_map(String::into_bytes),
        (proptest::sample::select(valid), 0..40_usize, any::<u8>()).prop_map(|(base, at, byte)| {
            let mut bytes = base.as_bytes().to_vec();
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = byte;
            }
            bytes
        }),
    ]
}

#[test]
fn command_bodies() {
    let bodies = &[
        r#"{"qty": 5}"#,
        r#"{"qty": 5, "source": "x"}"#,
        r#"{"name": "W", "bom": [{"sku": "bolt", "qty": 2}]}"#,
        r#"{"product_id": "widget", "qty": 1, "warehouse": "main", "requester": {"customer": "c", "name": "n", "email": "e"}}"#,
        r#"{"reason": "why"}"#,
    ];
    let names: Vec<&str> = <Stock as jetsource::Aggregate>::Command::SPECS
        .iter()
        .chain(<Product as jetsource::Aggregate>::Command::SPECS)
        .chain(<Order as jetsource::Aggregate>::Command::SPECS)
        .map(|s| s.name)
        .collect();
    let strategy = (proptest::sample::select(names), text_like(bodies));
    runner()
        .run(&strategy, |(name, body)| {
            for result in [
                <Stock as jetsource::Aggregate>::Command::parse(name, &body).map(drop),
                <Product as jetsource::Aggregate>::Command::parse(name, &body).map(drop),
                <Order as jetsource::Aggregate>::Command::parse(name, &body).map(drop),
            ] {
                if let Err(e) = result {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn cloudevents_headers() {
    let names = vec![
        "ce-specversion",
        "ce-id",
        "ce-source",
        "ce-type",
        "ce-subject",
        "ce-time",
        "ce-schemaversion",
        "ce-aggregateversion",
        "ce-commandid",
        "ce-correlationid",
        "ce-causationid",
        "ce-actor",
        "traceparent",
    ];
    let value = prop_oneof!["[ -~]{0,60}", "%[0-9A-Fa-f]{0,3}[ -~]{0,10}", "[0-9]{1,25}", Just(String::new())];
    let strategy = proptest::collection::vec((proptest::sample::select(names), value), 0..14);
    runner()
        .run(&strategy, |pairs| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(name, value.as_str());
            }
            if let Err(reason) = jetsource::cloudevents::Attributes::read(&headers) {
                prop_assert!(!reason.to_string().is_empty());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn aggregate_ids_and_command_subjects() {
    let strategy = prop_oneof![
        ".{0,150}",
        "[A-Za-z0-9_@.=*>-]{0,40}",
        "cmd\\.[a-z*>]{0,8}\\.[A-Za-z0-9_@.*>-]{0,20}\\.[a-z.-]{0,12}",
    ];
    runner()
        .run(&strategy, |text| {
            if let Err(e) = jetsource::AggregateId::new(text.as_str()) {
                prop_assert!(!e.to_string().is_empty());
            }
            for check in
                [jetsource_runtime::registry::aggregate_id::<Stock>, jetsource_runtime::registry::aggregate_id::<Order>]
            {
                match check(&text) {
                    Ok(id) => prop_assert!(!id.as_str().contains(['.', '*', '>', ' '])),
                    Err(reason) => prop_assert!(reason.to_string().starts_with("invalid") && !reason.reason.is_empty()),
                }
            }
            if let Some((kind, id, command)) = jetsource_runtime::wire::subject::parse_command(&text) {
                prop_assert!(!kind.is_empty() && !id.is_empty() && !command.is_empty());
                prop_assert!(text.ends_with(command));
            }
            if let Err(e) = jetsource::metadata::validate_command_id(&text) {
                prop_assert!(!e.to_string().is_empty());
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn bearer_tokens() {
    let config = AuthConfig {
        jwt: Some(JwtConfig {
            key: JwtKey::Hs256(Secret::new("a secret of at least thirty-two characters")),
            issuer: None,
            audience: None,
            role_claim: None,
        }),
        api_keys: Vec::new(),
    };
    let auth = Authenticator::new(config).unwrap();
    // Checking a token with a configured key never waits; a runtime runs the async check.
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let segment = "[A-Za-z0-9_-]{0,40}";
    let strategy = prop_oneof![
        ".{0,200}",
        (segment, segment, segment).prop_map(|(a, b, c)| format!("Bearer {a}.{b}.{c}")),
        "(?i)bearer [ -~]{0,120}",
        // Base64url of JSON headers and claims, signature arbitrary.
        (
            "\\{\"alg\":\"(HS256|none|RS256|ES256)\"(,\"crit\":\\[\\])?\\}",
            "\\{(\"(sub|exp|nbf|iss|aud|role)\":([0-9.e-]{1,25}|\"[^\"]{0,10}\"),?){0,5}\\}",
            segment
        )
            .prop_map(|(h, c, s)| {
                use base64::Engine as _;
                let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                format!("Bearer {}.{}.{s}", e.encode(h), e.encode(c))
            }),
    ];
    runner()
        .run(&strategy, |authorization| {
            match runtime.block_on(auth.check(Some(&authorization), None, Role::Viewer)) {
                Ok(principal) => prop_assert!(!principal.actor.contains(['\r', '\n'])),
                Err(AuthError::Invalid(reason)) => prop_assert!(!reason.is_empty()),
                Err(other) => prop_assert!(!other.to_string().is_empty()),
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn topology_files() {
    let shipped = factory::TOPOLOGY;
    let strategy = prop_oneof![
        ".{0,300}",
        (0..shipped.len(), ".{0,6}").prop_map(move |(at, insert)| {
            let at = (0..=at).rev().find(|i| shipped.is_char_boundary(*i)).unwrap_or(0);
            format!("{}{insert}{}", &shipped[..at], &shipped[at..])
        }),
        "(\\[\\[(stream|kv|consumer|retention)\\]\\]\n([a-z_]{1,12} = (\"[^\"\n]{0,10}\"|[0-9]{1,4}|true|\\[\\]|\\[\"[a-z.>]{1,8}\"\\])\n){0,5}){0,4}",
    ];
    runner()
        .run(&strategy, |text| {
            if let Err(e) = Topology::parse(&text) {
                prop_assert!(e.to_string().starts_with("invalid topology"));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn log_queries() {
    let field = prop_oneof![Just(None), ".{0,40}".prop_map(Some), "[a-z]{1,8}".prop_map(Some)];
    let strategy = (field.clone(), field.clone(), field, proptest::option::of(any::<usize>()));
    runner()
        .run(&strategy, |(service, level, trace_id, limit)| {
            let query = jetsource_runtime::logbook::LogQuery { service, level, trace_id, limit };
            if let Err(reason) = query.validate() {
                prop_assert!(!reason.to_string().is_empty());
            }
            Ok(())
        })
        .unwrap();
}
