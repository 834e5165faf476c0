//! Command services: one generic service per registered aggregate type, and the router.

pub mod id;
pub mod router;
pub mod service;

pub use service::{CommandConfig, Deps, NoPrepare, Prepare, Reads, RunningService};
