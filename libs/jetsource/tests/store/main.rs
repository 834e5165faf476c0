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
mod support;
mod upcast;
