//! One factory process: the framework's [`Process`] over the factory's registry, with the
//! saga's settings besides the framework's.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use factory_saga::SagaConfig;
use jetsource::topology::Topology;
use jetsource_cli::process::{Process, ProcessConfig};

/// Every service of the factory, in start order (from the registry).
pub fn all_services() -> Vec<&'static str> {
    crate::registry::app().service_names()
}

/// How to run one factory process: the framework's settings (dereferenced, so `config.commands`
/// works) and the saga's.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// What every application process has.
    pub process: ProcessConfig,
    /// How the production saga runs.
    pub saga: SagaConfig,
}

impl AppConfig {
    /// Defaults: provision the shipped topology with replicas as declared, no HTTP.
    pub fn new(nats_url: impl Into<String>, services: Vec<&'static str>) -> Self {
        let topology = Topology::parse(crate::TOPOLOGY).unwrap_or_default();
        Self { process: ProcessConfig::new(nats_url, services, topology), saga: SagaConfig::default() }
    }
}

impl Deref for AppConfig {
    type Target = ProcessConfig;
    fn deref(&self) -> &ProcessConfig {
        &self.process
    }
}

impl DerefMut for AppConfig {
    fn deref_mut(&mut self) -> &mut ProcessConfig {
        &mut self.process
    }
}

/// Builds factory processes.
pub struct App;

impl App {
    /// Connects, provisions, and subscribes every service `config` names.
    ///
    /// # Errors
    /// As [`Process::build`].
    pub async fn build(config: AppConfig) -> anyhow::Result<Process> {
        Process::build(Arc::new(crate::registry::configured(config.saga)), config.process).await
    }
}
