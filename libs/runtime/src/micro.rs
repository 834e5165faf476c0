//! The NATS micro-service protocol (ADR-32): `$SRV.PING|INFO|STATS[.<name>[.<id>]]` answered
//! for a service whose endpoints we run ourselves, so error replies can carry a JSON body
//! (async-nats' own service sends errors with an empty body) while stats stay right.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::{Client, Subscriber};
use futures::StreamExt;
use serde::Serialize;
use time::OffsetDateTime;

/// One running micro service (name, id, version, endpoints and their stats).
#[derive(Clone)]
pub struct MicroService {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    name: String,
    id: String,
    version: String,
    description: String,
    metadata: BTreeMap<String, String>,
    started: OffsetDateTime,
    endpoints: Mutex<Vec<Arc<Endpoint>>>,
}

/// Stats of one endpoint, updated by whoever answers its requests.
pub struct Endpoint {
    name: String,
    subject: String,
    queue_group: String,
    requests: AtomicU64,
    errors: AtomicU64,
    processing_nanos: AtomicU64,
    last_error: Mutex<String>,
}

impl Endpoint {
    /// Records one answered request: how long it took and, for an error, its code and text.
    pub fn record(&self, elapsed: Duration, error: Option<(u16, &str)>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.processing_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        if let Some((code, text)) = error {
            self.errors.fetch_add(1, Ordering::Relaxed);
            *self.last_error.lock().unwrap_or_else(PoisonError::into_inner) = format!("{code}:{text}");
        }
    }
}

#[derive(Serialize)]
struct Ping<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    metadata: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct EndpointInfo<'a> {
    name: &'a str,
    subject: &'a str,
    queue_group: &'a str,
}

#[derive(Serialize)]
struct Info<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    description: &'a str,
    metadata: &'a BTreeMap<String, String>,
    endpoints: Vec<EndpointInfo<'a>>,
}

#[derive(Serialize)]
struct EndpointStats<'a> {
    name: &'a str,
    subject: &'a str,
    queue_group: &'a str,
    num_requests: u64,
    num_errors: u64,
    processing_time: u64,
    average_processing_time: u64,
    last_error: String,
}

#[derive(Serialize)]
struct Stats<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'a str,
    id: &'a str,
    version: &'a str,
    #[serde(with = "time::serde::rfc3339")]
    started: OffsetDateTime,
    endpoints: Vec<EndpointStats<'a>>,
}

impl MicroService {
    /// Starts answering `$SRV` requests for service `name` (`[A-Za-z0-9_-]+`) at `version`.
    ///
    /// # Errors
    /// When the subscriptions cannot be made.
    pub async fn start(
        client: &Client,
        name: &str,
        version: &str,
        description: &str,
    ) -> Result<Self, async_nats::SubscribeError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let metadata = BTreeMap::from([("instance".to_owned(), instance_name())]);
        let inner = Arc::new(Inner {
            client: client.clone(),
            name: name.to_owned(),
            id: id.clone(),
            version: version.to_owned(),
            description: description.to_owned(),
            metadata,
            started: OffsetDateTime::now_utc(),
            endpoints: Mutex::new(Vec::new()),
        });
        let mut subscriptions = Vec::new();
        for verb in ["PING", "INFO", "STATS"] {
            for subject in [format!("$SRV.{verb}"), format!("$SRV.{verb}.{name}"), format!("$SRV.{verb}.{name}.{id}")] {
                subscriptions.push(client.subscribe(subject).await?);
            }
        }
        let all = futures::stream::select_all(subscriptions);
        tokio::spawn(answer(Arc::clone(&inner), all));
        Ok(Self { inner })
    }

    /// Subscribes endpoint `name` on `subject` in `queue_group` and returns its requests and
    /// the stats handle to record answers on.
    ///
    /// # Errors
    /// When the subscription cannot be made.
    pub async fn endpoint(
        &self,
        name: &str,
        subject: &str,
        queue_group: &str,
    ) -> Result<(Subscriber, Arc<Endpoint>), async_nats::SubscribeError> {
        let requests = self.inner.client.queue_subscribe(subject.to_owned(), queue_group.to_owned()).await?;
        let endpoint = Arc::new(Endpoint {
            name: name.to_owned(),
            subject: subject.to_owned(),
            queue_group: queue_group.to_owned(),
            requests: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            processing_nanos: AtomicU64::new(0),
            last_error: Mutex::new(String::new()),
        });
        self.inner.endpoints.lock().unwrap_or_else(PoisonError::into_inner).push(Arc::clone(&endpoint));
        Ok((requests, endpoint))
    }

    /// The service instance id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// The service name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }
}

async fn answer(inner: Arc<Inner>, mut requests: futures::stream::SelectAll<Subscriber>) {
    while let Some(request) = requests.next().await {
        let Some(reply) = request.reply else { continue };
        let verb = request.subject.split('.').nth(1).unwrap_or_default();
        let body = {
            let endpoints = inner.endpoints.lock().unwrap_or_else(PoisonError::into_inner);
            match verb {
                "PING" => serde_json::to_vec(&Ping {
                    kind: "io.nats.micro.v1.ping_response",
                    name: &inner.name,
                    id: &inner.id,
                    version: &inner.version,
                    metadata: &inner.metadata,
                }),
                "INFO" => serde_json::to_vec(&Info {
                    kind: "io.nats.micro.v1.info_response",
                    name: &inner.name,
                    id: &inner.id,
                    version: &inner.version,
                    description: &inner.description,
                    metadata: &inner.metadata,
                    endpoints: endpoints
                        .iter()
                        .map(|e| EndpointInfo { name: &e.name, subject: &e.subject, queue_group: &e.queue_group })
                        .collect(),
                }),
                _ => serde_json::to_vec(&Stats {
                    kind: "io.nats.micro.v1.stats_response",
                    name: &inner.name,
                    id: &inner.id,
                    version: &inner.version,
                    started: inner.started,
                    endpoints: endpoints.iter().map(|e| stats(e)).collect(),
                }),
            }
        };
        match body {
            Ok(body) => {
                if let Err(e) = inner.client.publish(reply, body.into()).await {
                    tracing::warn!(error = %e, "cannot answer a $SRV request");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode a $SRV answer"),
        }
    }
}

fn stats(e: &Endpoint) -> EndpointStats<'_> {
    let requests = e.requests.load(Ordering::Relaxed);
    let total = e.processing_nanos.load(Ordering::Relaxed);
    EndpointStats {
        name: &e.name,
        subject: &e.subject,
        queue_group: &e.queue_group,
        num_requests: requests,
        num_errors: e.errors.load(Ordering::Relaxed),
        processing_time: total,
        average_processing_time: total.checked_div(requests).unwrap_or(0),
        last_error: e.last_error.lock().unwrap_or_else(PoisonError::into_inner).clone(),
    }
}

/// This process's instance name: `$HOSTNAME` (the pod name in Kubernetes) and the pid.
pub fn instance_name() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".to_owned());
    format!("{host}-{}", std::process::id())
}
