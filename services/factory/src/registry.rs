//! The factory, registered once: its aggregates with the service owning each, its views with
//! their key spelling, and its other services. Every part of the factory (command services,
//! router, HTTP edge, `/status`, `factory run`, Kubernetes) reads this.

use crate::views::{CommandsView, OrdersView, ProductsView, StockView, WarehouseView};
use factory_domain::Warehouse;
use factory_domain::order::{Order, OrderCommand, ProductInfo};
use factory_domain::product::Product;
use factory_domain::stock::Stock;
use factory_notifier::Notifier;
use factory_saga::{ProductionSaga, SagaConfig};
use futures::future::BoxFuture;
use jetsource::id::escape_kv_token;
use jetsource::{AggregateId, ErrorCode};
use jetsource_runtime::App;
use jetsource_runtime::command::{Prepare, Reads};
use jetsource_runtime::registry::{Permissions, ServiceSpec, Started};
use jetsource_runtime::views::ViewKeys;
use jetsource_runtime::wire::ErrorBody;

/// The factory application, its saga with default settings.
pub fn app() -> App {
    configured(SagaConfig::default())
}

/// The factory application with the saga's settings.
#[rustfmt::skip] // the permission lists read best a group a line
pub fn configured(saga: SagaConfig) -> App {
    App::new("factory")
        .aggregate::<Product>("catalog")
        .aggregate::<Stock>("stock")
        .aggregate_prepared::<Order, _>("production", ProductLookup)
        .view::<StockView>(ViewKeys::aggregate::<Stock>())
        .view::<WarehouseView>(ViewKeys::custom("^[A-Za-z0-9_-]{1,60}$", warehouse_key, str::to_owned))
        .view::<OrdersView>(ViewKeys::aggregate::<Order>())
        .view::<ProductsView>(ViewKeys::aggregate::<Product>())
        .view::<CommandsView>(ViewKeys::custom(COMMAND_ID, command_key, escape_kv_token))
        .process_manager(
            ProductionSaga::new(&saga),
            "The production saga: reserves, releases and consumes stock for orders",
            saga.process(),
        )
        .service(ServiceSpec::custom("notifier", "Asynchronous outcomes of commands to notify.<command_id>", |ctx| {
            Box::pin(async move {
                let notifier = Notifier::start(ctx.client, ctx.metrics).await?;
                Ok(run(move |stop| notifier.run_until_stopped(stop)))
            })
        })
        .permissions(Permissions::new(
            &[
                "notify.>",
                "$JS.API.INFO", "$JS.API.STREAM.INFO.*",
                "$JS.API.CONSUMER.INFO.EVENTS.notifier", "$JS.API.CONSUMER.MSG.NEXT.EVENTS.notifier",
                "$JS.ACK.EVENTS.notifier.>",
                "$KV.parked.notifier.>", "$JS.API.CONSUMER.CREATE.KV_parked.>", "$JS.API.CONSUMER.DELETE.KV_parked.>",
            ],
            &[],
        )))
        .service(ServiceSpec::logbook())
        .service(ServiceSpec::archiver())
        .service(ServiceSpec::edge())
}

/// A started service, run until the signal.
fn run<F, Fut>(serve: F) -> Started
where
    F: FnOnce(jetsource_runtime::Shutdown) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    Box::new(move |stop| Box::pin(serve(stop)))
}

/// What command ids and idempotency keys look like (`docs/contracts/nats.md`).
const COMMAND_ID: &str = jetsource_runtime::wire::COMMAND_ID_PATTERN;

fn warehouse_key(natural: &str) -> Result<String, String> {
    Warehouse::new(natural).map(|w| w.to_string())
}

fn command_key(natural: &str) -> Result<String, String> {
    jetsource::metadata::validate_command_id(natural).map_err(|e| e.to_string())?;
    Ok(escape_kv_token(natural))
}

/// `plan` needs the product: defined? retired? its bill of materials. Products are read from
/// the event store, not a view: planning needs the truth.
struct ProductLookup;

impl Prepare<Order> for ProductLookup {
    fn prepare<'a>(
        &'a self,
        reads: &'a Reads,
        command: OrderCommand,
    ) -> BoxFuture<'a, Result<OrderCommand, ErrorBody>> {
        Box::pin(async move {
            let OrderCommand::Plan { product_id, qty, warehouse, requester, .. } = command else { return Ok(command) };
            let id = AggregateId::new(product_id.as_str())
                .map_err(|e| ErrorBody::new(ErrorCode::Invalid, format!("product_id: {e}")))?;
            let loaded = reads
                .load::<Product>(&id)
                .await
                .map_err(|e| ErrorBody::new(ErrorCode::Unavailable, format!("product lookup: {e}")))?;
            let product =
                loaded.state.defined.then_some(ProductInfo { retired: loaded.state.retired, bom: loaded.state.bom });
            Ok(OrderCommand::Plan { product_id, qty, warehouse, requester, product })
        })
    }
}

#[cfg(test)]
mod tests {
    use factory_domain::StockId;

    use super::*;

    #[test]
    fn the_catalogue_knows_types_commands_and_ids() {
        let app = app();
        assert!(app.aggregate_entry("stock").is_some());
        assert!(app.aggregate_entry("widget").is_none());
        let order = app.aggregate_entry("order").unwrap();
        assert!(order.command("start").unwrap().asynchronous);
        let unknown = app.aggregate_entry("stock").unwrap().command("teleport").unwrap_err();
        assert!(unknown.is_not_found() && unknown.to_string().contains("receive, ship"));
        let stock = app.aggregate_entry("stock").unwrap();
        assert!(stock.id("bolt@main").is_ok());
        assert!(stock.id("bolt").is_err());
        let product = app.aggregate_entry("product").unwrap();
        assert!(product.id("bolt@main").is_ok());
        assert!(product.id("a.b").is_err());
        assert!(StockId::parse("bolt@main").is_ok());
    }

    #[test]
    fn command_services_come_first_each_service_once_and_the_edge_is_not_discovered() {
        let app = app();
        let names = app.service_names();
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        let owners: Vec<&str> = app.aggregates().iter().map(|a| a.service()).collect();
        assert_eq!(&names[..owners.len()], owners.as_slice(), "command services start first");
        assert!(app.discoverable_services().iter().all(|s| *s != "gateway"));
        assert!(app.discoverable_services().len() + 1 == names.len(), "only the edge is not discovered");
    }
}
