//! The directory's vocabulary and rules, with no I/O.
//!
//! Everything here is pure: validated values ([`values`]), the access model of apps and plans
//! ([`access`]), and the in-memory model of one team's directory ([`directory`]) that decides
//! whether a change is allowed and answers list queries. The store persists what this layer
//! decided; the HTTP layer only translates.

pub mod access;
pub mod directory;
pub mod events;
pub mod scim;
pub mod sync;
pub mod values;
pub mod webhooks;

use thiserror::Error;

use values::EventSeq;

/// A rule of the contract that a request broke. Each variant is one `error.type` of the contract;
/// the HTTP layer maps them in one place.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RuleError {
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("group not found")]
    GroupNotFound,
    #[error("parent group not found")]
    ParentGroupNotFound,
    #[error("the group tree would exceed the maximum depth")]
    GroupTooDeep,
    #[error("the default group cannot be modified")]
    DefaultGroupModified,
    #[error("the group still has child groups or members")]
    GroupNotEmpty,
    #[error("a group cannot be moved under itself or its descendants")]
    GroupCycle,
    #[error("the remote id is already used by another group")]
    DuplicatedRemoteId,
    #[error("the user is already a member there")]
    ContactsUserExisted,
    #[error("the user is not a member there")]
    ContactsUserNotFound,
    #[error("no admin seat is left")]
    ExceedUserLimit,
    #[error(
        "events after this cursor were removed by retention; read the directory again, then \
         the feed from after={resume_after}"
    )]
    EventsExpired {
        /// The last event written when the cursor was refused.
        resume_after: EventSeq,
    },
    #[error("webhook not found")]
    WebhookNotFound,
    #[error("the team has {most} webhooks, the most allowed")]
    WebhookLimitReached { most: usize },
}

impl RuleError {
    pub fn invalid(message: impl Into<String>) -> Self {
        RuleError::InvalidArgument(message.into())
    }
}
