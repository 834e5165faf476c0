//! The views, type-erased: each knows its name, how a query key maps to a bucket key, and how
//! to open a worker of a given version.

use std::marker::PhantomData;
use std::sync::Arc;

use async_nats::Client;
use factory_domain::Warehouse;
use factory_runtime::Shutdown;
use futures::future::BoxFuture;
use jetsource::AggregateId;
use jetsource::id::escape_kv_token;
use jetsource::projection::{Projection, ProjectionError, ViewConfig, ViewHandle, ViewObserver, ViewWorker};

use crate::views::{CommandsView, OrdersView, ProductsView, StockView, WarehouseView};

/// A running worker: its handle, and the signal that stops it.
pub(crate) struct Running {
    pub(crate) handle: ViewHandle,
    pub(crate) stop: Shutdown,
}

pub(crate) trait ViewKind: Send + Sync {
    fn name(&self) -> &'static str;
    /// The bucket key of a query key (`bolt@main` → `bolt=main`).
    fn key(&self, natural: &str) -> Result<String, String>;
    /// Opens version `version` and starts consuming.
    fn start(
        &self,
        client: Client,
        version: u32,
        config: ViewConfig,
        observer: Arc<dyn ViewObserver>,
    ) -> BoxFuture<'static, Result<Running, ProjectionError>>;
}

struct Kind<P> {
    name: &'static str,
    key: fn(&str) -> Result<String, String>,
    _projection: PhantomData<fn() -> P>,
}

impl<P: Projection + Default> ViewKind for Kind<P> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn key(&self, natural: &str) -> Result<String, String> {
        (self.key)(natural)
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

fn aggregate_key(natural: &str) -> Result<String, String> {
    AggregateId::new(natural).map(|id| id.kv_token()).map_err(|e| e.to_string())
}

fn stock_key(natural: &str) -> Result<String, String> {
    factory_domain::StockId::parse(natural)?;
    aggregate_key(natural)
}

fn warehouse_key(natural: &str) -> Result<String, String> {
    Warehouse::new(natural).map(|w| w.to_string())
}

fn command_key(natural: &str) -> Result<String, String> {
    jetsource::metadata::validate_command_id(natural)?;
    Ok(escape_kv_token(natural))
}

/// Every view of the factory.
pub(crate) fn all() -> Vec<Arc<dyn ViewKind>> {
    vec![
        Arc::new(Kind::<StockView> { name: "stock", key: stock_key, _projection: PhantomData }),
        Arc::new(Kind::<WarehouseView> { name: "warehouse", key: warehouse_key, _projection: PhantomData }),
        Arc::new(Kind::<OrdersView> { name: "orders", key: aggregate_key, _projection: PhantomData }),
        Arc::new(Kind::<ProductsView> { name: "products", key: aggregate_key, _projection: PhantomData }),
        Arc::new(Kind::<CommandsView> { name: "commands", key: command_key, _projection: PhantomData }),
    ]
}

/// Prefixes use the same spelling as keys, character by character.
pub(crate) fn prefix(kind: &dyn ViewKind, natural: &str) -> String {
    if natural.is_empty() {
        return String::new();
    }
    match kind.name() {
        "commands" => escape_kv_token(natural),
        _ => natural.replace('@', "="),
    }
}
