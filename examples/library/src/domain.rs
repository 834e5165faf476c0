//! The library's aggregates: books, members and loans. Pure: `handle` decides, `apply` folds.

use jetsource_core::command::fields;
use jetsource_core::{Aggregate, Command, DomainError, DomainEvent};
use serde::{Deserialize, Serialize};

/// A book of the collection.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Book {
    /// Its title, once added.
    pub title: Option<String>,
    /// Retired books are not lent.
    pub retired: bool,
}

/// What a book can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Command)]
#[command(aggregate = Book)]
pub enum BookCommand {
    /// Adds the book to the collection.
    #[command(example = r#"{"title": "Dune", "author": "Frank Herbert"}"#)]
    Add {
        /// Its title.
        #[serde(deserialize_with = "fields::text")]
        #[schemars(length(min = 1, max = 200))]
        title: String,
        /// Its author.
        #[serde(deserialize_with = "fields::text")]
        #[schemars(length(min = 1, max = 200))]
        author: String,
    },
    /// Takes the book out of the collection.
    Retire,
}

/// What happened to a book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[serde(tag = "type", content = "data")]
pub enum BookEvent {
    /// It was added.
    BookAdded {
        /// Its title.
        title: String,
        /// Its author.
        author: String,
    },
    /// It was retired.
    BookRetired {},
}

/// A member of the library.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Member {
    /// Their name, once joined.
    pub name: Option<String>,
    /// Suspended members do not borrow.
    pub suspended: bool,
}

/// What a member can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Command)]
#[command(aggregate = Member)]
pub enum MemberCommand {
    /// Joins the library.
    #[command(example = r#"{"name": "Ada"}"#)]
    Join {
        /// Their name.
        #[serde(deserialize_with = "fields::text")]
        #[schemars(length(min = 1, max = 200))]
        name: String,
    },
    /// Suspends the member: no new loans.
    #[command(example = r#"{"reason": "overdue books"}"#)]
    Suspend {
        /// Why.
        #[serde(deserialize_with = "fields::text")]
        #[schemars(length(min = 1, max = 200))]
        reason: String,
    },
}

/// What happened to a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[serde(tag = "type", content = "data")]
pub enum MemberEvent {
    /// They joined.
    MemberJoined {
        /// Their name.
        name: String,
    },
    /// They were suspended.
    MemberSuspended {
        /// Why.
        reason: String,
    },
}

/// A loan of one book to one member.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Loan {
    /// The book and member, once opened.
    pub opened: Option<(String, String)>,
    /// Whether the book came back.
    pub closed: bool,
    /// Whether the loan period ended with the book still out.
    #[serde(default)]
    pub overdue: bool,
}

/// What the lending service looked up before `open` (the rule spans book, member and loan).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eligibility {
    /// The book exists and is not retired.
    pub book_lendable: bool,
    /// The member exists and is not suspended.
    pub member_active: bool,
}

/// What a loan can be asked to do.
#[derive(Debug, Clone, PartialEq, Eq, Command)]
#[command(aggregate = Loan)]
pub enum LoanCommand {
    /// Lends a book to a member: the book must be in the collection, the member active.
    #[command(example = r#"{"book_id": "dune", "member_id": "ada"}"#)]
    Open {
        /// The book.
        #[serde(deserialize_with = "fields::aggregate_id")]
        book_id: String,
        /// The member.
        #[serde(deserialize_with = "fields::aggregate_id")]
        member_id: String,
        /// Looked up by the service.
        #[command(lookup)]
        eligibility: Eligibility,
    },
    /// The book came back.
    Close,
    /// The loan period ended with the book still out (sent by the `due_dates` process manager).
    #[command(internal)]
    MarkOverdue,
}

/// What happened to a loan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, DomainEvent)]
#[serde(tag = "type", content = "data")]
pub enum LoanEvent {
    /// The book was lent.
    LoanOpened {
        /// The book.
        book_id: String,
        /// The member.
        member_id: String,
    },
    /// The book came back.
    LoanClosed {
        /// The member who had it.
        member_id: String,
    },
    /// The loan period ended with the book still out.
    LoanOverdue {
        /// The member who has it.
        member_id: String,
    },
}

/// Why the library refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Created twice.
    #[error("it exists already")]
    Exists,
    /// Never created.
    #[error("no such thing")]
    NotFound,
    /// The book is not in the collection (never added or retired).
    #[error("the book cannot be lent")]
    BookUnavailable,
    /// The member does not exist or is suspended.
    #[error("the member cannot borrow")]
    MemberInactive,
    /// Closed twice.
    #[error("the loan is closed")]
    Closed,
}

impl DomainError for Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::Exists => "exists",
            Refusal::NotFound => "not_found",
            Refusal::BookUnavailable => "book_unavailable",
            Refusal::MemberInactive => "member_inactive",
            Refusal::Closed => "closed",
        }
    }

    fn is_not_found(&self) -> bool {
        matches!(self, Refusal::NotFound)
    }
}

impl Aggregate for Book {
    const TYPE: &'static str = "book";
    type Command = BookCommand;
    type Event = BookEvent;
    type Error = Refusal;

    fn handle(&self, command: BookCommand) -> Result<Vec<BookEvent>, Refusal> {
        match (command, &self.title) {
            (BookCommand::Add { .. }, Some(_)) => Err(Refusal::Exists),
            (BookCommand::Add { title, author }, None) => Ok(vec![BookEvent::BookAdded { title, author }]),
            (BookCommand::Retire, None) => Err(Refusal::NotFound),
            (BookCommand::Retire, Some(_)) if self.retired => Err(Refusal::Closed),
            (BookCommand::Retire, Some(_)) => Ok(vec![BookEvent::BookRetired {}]),
        }
    }

    fn apply(&mut self, event: &BookEvent) {
        match event {
            BookEvent::BookAdded { title, .. } => self.title = Some(title.clone()),
            BookEvent::BookRetired {} => self.retired = true,
        }
    }
}

impl Aggregate for Member {
    const TYPE: &'static str = "member";
    type Command = MemberCommand;
    type Event = MemberEvent;
    type Error = Refusal;

    fn handle(&self, command: MemberCommand) -> Result<Vec<MemberEvent>, Refusal> {
        match (command, &self.name) {
            (MemberCommand::Join { .. }, Some(_)) => Err(Refusal::Exists),
            (MemberCommand::Join { name }, None) => Ok(vec![MemberEvent::MemberJoined { name }]),
            (MemberCommand::Suspend { .. }, None) => Err(Refusal::NotFound),
            (MemberCommand::Suspend { reason }, Some(_)) => Ok(vec![MemberEvent::MemberSuspended { reason }]),
        }
    }

    fn apply(&mut self, event: &MemberEvent) {
        match event {
            MemberEvent::MemberJoined { name } => self.name = Some(name.clone()),
            MemberEvent::MemberSuspended { .. } => self.suspended = true,
        }
    }
}

impl Aggregate for Loan {
    const TYPE: &'static str = "loan";
    type Command = LoanCommand;
    type Event = LoanEvent;
    type Error = Refusal;

    fn handle(&self, command: LoanCommand) -> Result<Vec<LoanEvent>, Refusal> {
        match (command, &self.opened) {
            (LoanCommand::Open { .. }, Some(_)) => Err(Refusal::Exists),
            (LoanCommand::Open { eligibility, .. }, None) if !eligibility.book_lendable => {
                Err(Refusal::BookUnavailable)
            }
            (LoanCommand::Open { eligibility, .. }, None) if !eligibility.member_active => Err(Refusal::MemberInactive),
            (LoanCommand::Open { book_id, member_id, .. }, None) => {
                Ok(vec![LoanEvent::LoanOpened { book_id, member_id }])
            }
            (LoanCommand::Close, None) => Err(Refusal::NotFound),
            (LoanCommand::Close, Some(_)) if self.closed => Err(Refusal::Closed),
            (LoanCommand::Close, Some((_, member_id))) => {
                Ok(vec![LoanEvent::LoanClosed { member_id: member_id.clone() }])
            }
            (LoanCommand::MarkOverdue, None) => Err(Refusal::NotFound),
            (LoanCommand::MarkOverdue, Some(_)) if self.closed => Err(Refusal::Closed),
            (LoanCommand::MarkOverdue, Some(_)) if self.overdue => Err(Refusal::Exists),
            (LoanCommand::MarkOverdue, Some((_, member_id))) => {
                Ok(vec![LoanEvent::LoanOverdue { member_id: member_id.clone() }])
            }
        }
    }

    fn apply(&mut self, event: &LoanEvent) {
        match event {
            LoanEvent::LoanOpened { book_id, member_id } => self.opened = Some((book_id.clone(), member_id.clone())),
            LoanEvent::LoanClosed { .. } => self.closed = true,
            LoanEvent::LoanOverdue { .. } => self.overdue = true,
        }
    }
}
