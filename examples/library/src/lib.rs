//! # library
//!
//! A second jetsource application, built on the framework crates only: a lending library with
//! books, members and loans, served over NATS and HTTP with its own generated OpenAPI document,
//! `/status`, metrics and command line (`library up`, `library run <service>`).
//!
//! Everything it is: [`domain`] (three aggregates), and this file — the registration, the rule
//! that spans aggregates (lending needs a lendable book and an active member, looked up before
//! `open` is decided) and the `loans` view.
//!
//! ```
//! let app = library::app();
//! assert_eq!(app.aggregate_types(), ["book", "member", "loan"]);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
// `ErrorBody` is the error reply itself, built once per failed request; boxing it buys nothing.
#![allow(clippy::result_large_err)]

pub mod domain;
pub mod due_dates;

// The README's example application is compiled and run as a doctest here.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
mod readme {}

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use jetsource::projection::{EventView, Projection};
use jetsource::schemars::JsonSchema;
use jetsource::{AggregateId, Codec, ErrorCode};
use jetsource_runtime::App;
use jetsource_runtime::command::{Prepare, Reads};
use jetsource_runtime::process::ProcessConfig;
use jetsource_runtime::registry::ServiceSpec;
use jetsource_runtime::views::ViewKeys;
use jetsource_runtime::wire::ErrorBody;
use serde::{Deserialize, Serialize};

use domain::{Book, Eligibility, Loan, LoanCommand, LoanEvent, Member};

/// The declared topology (`topology.toml`).
pub const TOPOLOGY: &str = include_str!("../topology.toml");

/// The library, registered once: loans of 14 days.
pub fn app() -> App {
    app_with_loan_period(time::Duration::days(14))
}

/// The library with loans of `period`.
pub fn app_with_loan_period(period: time::Duration) -> App {
    App::new("library")
        .aggregate::<Book>("catalogue")
        .aggregate::<Member>("members")
        .aggregate_prepared::<Loan, _>("lending", LookUpEligibility)
        .view::<LoansView>(ViewKeys::aggregate::<Member>())
        .process_manager(
            due_dates::DueDates::new(period),
            "Marks loans overdue when their period ends with the book still out",
            ProcessConfig::default(),
        )
        .service(ServiceSpec::logbook())
        .service(ServiceSpec::edge())
}

/// Before `open`: is the book lendable, is the member active? Read from the event store.
struct LookUpEligibility;

impl Prepare<Loan> for LookUpEligibility {
    fn prepare<'a>(&'a self, reads: &'a Reads, command: LoanCommand) -> BoxFuture<'a, Result<LoanCommand, ErrorBody>> {
        Box::pin(async move {
            let LoanCommand::Open { book_id, member_id, .. } = command else { return Ok(command) };
            let unavailable = |e: jetsource::StoreError| ErrorBody::new(ErrorCode::Unavailable, e.to_string());
            let id = |raw: &str| AggregateId::new(raw).map_err(|e| ErrorBody::new(ErrorCode::Invalid, e.to_string()));
            let book = reads.load::<Book>(&id(&book_id)?).await.map_err(unavailable)?.state;
            let member = reads.load::<Member>(&id(&member_id)?).await.map_err(unavailable)?.state;
            let eligibility = Eligibility {
                book_lendable: book.title.is_some() && !book.retired,
                member_active: member.name.is_some() && !member.suspended,
            };
            Ok(LoanCommand::Open { book_id, member_id, eligibility })
        })
    }
}

/// `loans`: per member, the books they have out (by loan id).
#[derive(Default)]
pub struct LoansView {
    codec: Codec<LoanEvent>,
}

/// A `loans` document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "jetsource::schemars")]
pub struct MemberLoans {
    /// The member.
    pub member_id: String,
    /// Book of each open loan, by loan id.
    pub open: BTreeMap<String, String>,
    /// Open loans past their period.
    #[serde(default)]
    pub overdue: std::collections::BTreeSet<String>,
    /// Loans closed so far.
    pub returned: u64,
}

impl Projection for LoansView {
    type Doc = MemberLoans;

    fn name(&self) -> &'static str {
        "loans"
    }

    fn subjects(&self) -> Vec<String> {
        vec!["evt.loan.>".into()]
    }

    fn keys(&self, event: &EventView<'_>) -> Result<Vec<String>, String> {
        let member = match self.codec.decode(event.stored).map_err(|e| e.to_string())?.1 {
            LoanEvent::LoanOpened { member_id, .. }
            | LoanEvent::LoanClosed { member_id }
            | LoanEvent::LoanOverdue { member_id } => member_id,
        };
        Ok(vec![AggregateId::new(member).map_err(|e| e.to_string())?.kv_token()])
    }

    fn apply(&self, event: &EventView<'_>, _key: &str, doc: &mut MemberLoans) -> Result<(), String> {
        match self.codec.decode(event.stored).map_err(|e| e.to_string())?.1 {
            LoanEvent::LoanOpened { book_id, member_id } => {
                doc.member_id = member_id;
                doc.open.insert(event.aggregate_id.to_owned(), book_id);
            }
            LoanEvent::LoanClosed { member_id } => {
                doc.member_id = member_id;
                doc.open.remove(event.aggregate_id);
                doc.overdue.remove(event.aggregate_id);
                doc.returned += 1;
            }
            LoanEvent::LoanOverdue { member_id } => {
                doc.member_id = member_id;
                doc.overdue.insert(event.aggregate_id.to_owned());
            }
        }
        Ok(())
    }
}
