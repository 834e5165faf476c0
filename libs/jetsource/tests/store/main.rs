//! Integration tests of the event-sourcing core against real nats-servers (one per test).

mod append;
mod archive;
mod batch;
mod connect;
mod consistency;
mod errors;
mod failover;
mod idempotency;
mod load;
mod projection;
mod provision;
#[macro_use]
mod support;
mod upcast;
