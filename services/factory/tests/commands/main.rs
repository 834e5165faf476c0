//! The command services end to end: real nats-server, the real `App`, NATS request/reply.

mod concurrency;
mod contract;
mod errors;
mod support;
