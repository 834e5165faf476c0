use jetsource::topology::{Action, ProvisionOptions, Risk, Topology, provision};
use jetsource_testkit::NatsServer;

use crate::support::TOPOLOGY;

const SMALL: &str = r#"
[[stream]]
name = "AUDIT"
subjects = ["audit.>"]
discard = "new"
max_age = "1h"
duplicate_window = "2m"
deny_delete = true

[[kv]]
bucket = "audit_views"
history = 1

[[consumer]]
stream = "AUDIT"
durable = "auditor"
filter_subjects = ["audit.>"]
ack_wait = "30s"
"#;

async fn js(server: &NatsServer) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(server.url()).await.unwrap())
}

#[tokio::test]
async fn provisioning_creates_what_is_missing_and_then_leaves_it_alone() {
    let server = NatsServer::start();
    let js = js(&server).await;
    for text in [TOPOLOGY, SMALL] {
        let topology = Topology::parse(text).unwrap();

        let dry = provision(&js, &topology, ProvisionOptions { dry_run: true, ..Default::default() }).await.unwrap();
        let first = provision(&js, &topology, ProvisionOptions::default()).await.unwrap();
        let second = provision(&js, &topology, ProvisionOptions::default()).await.unwrap();

        assert!(dry.items.iter().all(|i| i.action == Action::Created), "{dry}");
        assert!(first.items.iter().all(|i| i.action == Action::Created), "{first}");
        assert!(second.items.iter().all(|i| i.action == Action::Unchanged), "{second}");
    }
    let events = js.get_stream("EVENTS").await.unwrap().cached_info().config.clone();
    assert!(events.allow_direct && events.allow_atomic_publish && events.deny_delete);
    assert_eq!(events.duplicate_window, std::time::Duration::from_secs(120));
}

#[tokio::test]
async fn safe_differences_are_applied_and_destructive_ones_only_when_forced() {
    // Arrange
    let server = NatsServer::start();
    let js = js(&server).await;
    provision(&js, &Topology::parse(SMALL).unwrap(), ProvisionOptions::default()).await.unwrap();
    let changed = SMALL
        .replace(r#"max_age = "1h""#, r#"max_age = "30m""#) // shorter: could drop messages
        .replace(r#"duplicate_window = "2m""#, r#"duplicate_window = "5m""#) // harmless
        .replace(r#"ack_wait = "30s""#, r#"ack_wait = "1m""#);
    let topology = Topology::parse(&changed).unwrap();

    // Act
    let plain = provision(&js, &topology, ProvisionOptions::default()).await.unwrap();
    let after_plain = js.get_stream("AUDIT").await.unwrap().cached_info().config.clone();
    let forced = provision(&js, &topology, ProvisionOptions { force: true, ..Default::default() }).await.unwrap();
    let after_forced = js.get_stream("AUDIT").await.unwrap().cached_info().config.clone();

    // Assert
    let audit = &plain.items[0];
    assert_eq!(audit.action, Action::Drifted, "{plain}");
    let max_age = audit.differences.iter().find(|d| d.field == "max_age").unwrap();
    assert_eq!((max_age.risk, max_age.applied), (Risk::Destructive, false));
    assert!(
        plain.to_string().contains("max_age: 1h -> 30m (left as is: could lose data; rerun with --force)"),
        "{plain}"
    );
    assert_eq!(after_plain.duplicate_window.as_secs(), 300, "the safe change was applied");
    assert_eq!(after_plain.max_age.as_secs(), 3600, "the destructive one was not");
    assert_eq!(plain.items[2].action, Action::Updated, "consumer ack_wait is safe");
    assert_eq!(forced.items[0].action, Action::Updated, "{forced}");
    assert_eq!(after_forced.max_age.as_secs(), 1800);
}

#[tokio::test]
async fn a_dry_run_changes_nothing() {
    let server = NatsServer::start();
    let js = js(&server).await;
    let topology = Topology::parse(SMALL).unwrap();

    let report = provision(&js, &topology, ProvisionOptions { dry_run: true, ..Default::default() }).await.unwrap();

    assert!(report.to_string().contains("stream AUDIT"));
    assert!(report.to_string().contains("would create"));
    assert!(js.get_stream("AUDIT").await.is_err());
}
