//! The read side end to end: views against a fold of the event log, crash and restart,
//! rebuild under load, parked events, read-your-writes, queries, and the bounded event log
//! (compaction against the archive).

mod archive;
mod fold;
mod lifecycle;
mod queries;
// The factory harness the command, view and saga suites share.
#[allow(dead_code)]
#[path = "../common/support.rs"]
mod support;
