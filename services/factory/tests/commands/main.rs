//! The command services end to end: real nats-server, the real `App`, NATS request/reply.

mod concurrency;
mod contract;
mod errors;
// The factory harness the command, view and saga suites share.
#[allow(dead_code)]
#[path = "../common/support.rs"]
mod support;
