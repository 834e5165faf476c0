//! The views of an application, type-erased: each knows its name, how a query key maps to a
//! bucket key, and how to open a worker of a given version.

use std::marker::PhantomData;
use std::sync::Arc;

use async_nats::Client;
use futures::future::BoxFuture;
use jetsource::projection::{Projection, ProjectionError, ViewConfig, ViewHandle, ViewObserver, ViewWorker};
use jetsource::{Aggregate, AggregateId};

use crate::Shutdown;

/// A running worker: its handle, and the signal that stops it.
pub struct Running {
    /// What queries and operators need.
    pub handle: ViewHandle,
    /// Stops the worker.
    pub stop: Shutdown,
}

/// How the keys of a view are spelled: a query key (`bolt@main`) to its bucket key
/// (`bolt=main`), and a listing prefix to the bucket's spelling.
#[derive(Clone, Copy)]
pub struct ViewKeys {
    /// The bucket key of a query key, or why it is not one.
    pub key: fn(&str) -> Result<String, String>,
    /// The bucket spelling of a prefix of keys.
    pub prefix: fn(&str) -> String,
    /// The pattern query keys match (a JSON Schema `pattern`, for documents).
    pub pattern: &'static str,
}

impl ViewKeys {
    /// Keys are ids of aggregate type `A` (checked by [`Aggregate::check_id`]); `@` becomes `=`.
    pub fn aggregate<A: Aggregate>() -> Self {
        Self {
            key: |natural| {
                let id = AggregateId::new(natural).map_err(|e| e.to_string())?;
                A::check_id(&id)?;
                Ok(id.kv_token())
            },
            prefix: |natural| natural.replace('@', "="),
            pattern: A::ID_PATTERN,
        }
    }

    /// Keys matching `pattern`, spelled by `key`, listing prefixes by `prefix`.
    pub fn custom(pattern: &'static str, key: fn(&str) -> Result<String, String>, prefix: fn(&str) -> String) -> Self {
        Self { key, prefix, pattern }
    }
}

/// One view of an application, type-erased.
pub trait ViewEntry: Send + Sync {
    /// Its name (`stock`).
    fn name(&self) -> &'static str;
    /// The bucket key of a query key (`bolt@main` → `bolt=main`).
    fn key(&self, natural: &str) -> Result<String, String>;
    /// The bucket spelling of a listing prefix.
    fn prefix(&self, natural: &str) -> String;
    /// The pattern its query keys match.
    fn key_pattern(&self) -> &'static str;
    /// The JSON Schema of its documents (without the `seq` every document carries).
    fn doc_schema(&self) -> jetsource::schemars::Schema;
    /// Opens version `version` and starts consuming.
    fn start(
        &self,
        client: Client,
        version: u32,
        config: ViewConfig,
        observer: Arc<dyn ViewObserver>,
    ) -> BoxFuture<'static, Result<Running, ProjectionError>>;
}

/// View `P` registered under `name` with its key spelling.
pub(crate) struct Kind<P> {
    pub(crate) name: &'static str,
    pub(crate) keys: ViewKeys,
    pub(crate) _projection: PhantomData<fn() -> P>,
}

impl<P> ViewEntry for Kind<P>
where
    P: Projection + Default,
    P::Doc: jetsource::schemars::JsonSchema,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn doc_schema(&self) -> jetsource::schemars::Schema {
        jetsource::schemars::schema_for!(P::Doc)
    }

    fn key(&self, natural: &str) -> Result<String, String> {
        (self.keys.key)(natural)
    }

    fn prefix(&self, natural: &str) -> String {
        if natural.is_empty() { String::new() } else { (self.keys.prefix)(natural) }
    }

    fn key_pattern(&self) -> &'static str {
        self.keys.pattern
    }

    fn start(
        &self,
        client: Client,
        version: u32,
        config: ViewConfig,
        observer: Arc<dyn ViewObserver>,
    ) -> BoxFuture<'static, Result<Running, ProjectionError>> {
        Box::pin(async move {
            let worker = ViewWorker::open(client, Arc::new(P::default()), version, config, Some(observer)).await?;
            let handle = worker.handle();
            let stop = Shutdown::new();
            let signal = stop.clone();
            tokio::spawn(worker.run(async move { signal.wait().await }));
            Ok(Running { handle, stop })
        })
    }
}
