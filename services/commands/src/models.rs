//! The three command services: which aggregate each serves, how commands are parsed, and what
//! is looked up before `handle`.

use factory_domain::AggregateKind;
use factory_domain::command::CommandError as ParseError;
use factory_domain::order::{Order, OrderCommand, ProductInfo};
use factory_domain::product::{Product, ProductCommand};
use factory_domain::stock::{Stock, StockCommand};
use factory_runtime::reply::ErrorBody;
use jetsource::{AggregateId, ErrorCode, EventStore, Repository, RepositoryConfig, StoreConfig};

use crate::service::{CommandConfig, Deps, Model, RunningService, build};

/// The command services a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServiceKind {
    /// Products (`cmd.product.*`).
    Catalog,
    /// Stock (`cmd.stock.*`).
    Stock,
    /// Production orders (`cmd.order.*`).
    Production,
}

impl ServiceKind {
    /// Every command service.
    pub const ALL: [ServiceKind; 3] = [ServiceKind::Catalog, ServiceKind::Stock, ServiceKind::Production];

    /// The service named `name` (`catalog`, `stock`, `production`).
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.aggregate().service() == name)
    }

    /// The aggregate type it serves.
    pub fn aggregate(self) -> AggregateKind {
        match self {
            ServiceKind::Catalog => AggregateKind::Product,
            ServiceKind::Stock => AggregateKind::Stock,
            ServiceKind::Production => AggregateKind::Order,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        self.aggregate().service()
    }

    /// Subscribes the service and returns it ready to run.
    ///
    /// # Errors
    /// When the subscriptions cannot be made.
    pub async fn build(self, deps: &Deps, config: CommandConfig) -> Result<RunningService, async_nats::SubscribeError> {
        match self {
            ServiceKind::Catalog => build(ProductModel, deps, config).await,
            ServiceKind::Stock => build(StockModel, deps, config).await,
            ServiceKind::Production => {
                let store = EventStore::new(
                    deps.client.clone(),
                    StoreConfig { service: "production".into(), ..Default::default() },
                );
                // Products are read from the event store, not a view: planning needs the truth.
                let config_for_products = RepositoryConfig { cache_capacity: 0, ..config.repository.clone() };
                let products = Repository::<Product>::new(store, deps.snapshots.clone(), config_for_products);
                build(OrderModel { products }, deps, config).await
            }
        }
    }
}

struct ProductModel;

impl Model for ProductModel {
    type A = Product;
    const KIND: AggregateKind = AggregateKind::Product;

    fn parse(&self, command: &str, body: &[u8]) -> Result<ProductCommand, ParseError> {
        ProductCommand::parse(command, body)
    }
}

struct StockModel;

impl Model for StockModel {
    type A = Stock;
    const KIND: AggregateKind = AggregateKind::Stock;

    fn parse(&self, command: &str, body: &[u8]) -> Result<StockCommand, ParseError> {
        StockCommand::parse(command, body)
    }
}

struct OrderModel {
    products: Repository<Product>,
}

impl Model for OrderModel {
    type A = Order;
    const KIND: AggregateKind = AggregateKind::Order;

    fn parse(&self, command: &str, body: &[u8]) -> Result<OrderCommand, ParseError> {
        OrderCommand::parse(command, body)
    }

    /// `plan` needs the product: defined? retired? its bill of materials.
    async fn prepare(&self, command: OrderCommand) -> Result<OrderCommand, ErrorBody> {
        let OrderCommand::Plan { product_id, qty, warehouse, .. } = command else { return Ok(command) };
        let id = AggregateId::new(product_id.as_str())
            .map_err(|e| ErrorBody::new(ErrorCode::Invalid, format!("product_id: {e}")))?;
        let loaded = self
            .products
            .load(&id)
            .await
            .map_err(|e| ErrorBody::new(ErrorCode::Unavailable, format!("product lookup: {e}")))?;
        let product =
            loaded.state.defined.then_some(ProductInfo { retired: loaded.state.retired, bom: loaded.state.bom });
        Ok(OrderCommand::Plan { product_id, qty, warehouse, product })
    }
}
