//! The command services end to end: real nats-server, the real `App`, NATS request/reply; and
//! the command line as a user runs it.

mod cli;
mod concurrency;
mod consistency;
mod contract;
mod errors;
mod fuzz;
mod snapshots;
// The factory harness the command, view and saga suites share.
#[allow(dead_code)]
#[path = "../common/support.rs"]
mod support;
