//! Directory sync: the rules that turn a snapshot into one batch of changes, or into a list of
//! problems and no change at all.
//!
//! A snapshot names groups by `remote_id` and members by the calling app's `openid`. The planner
//! works on the final tree as a whole (existing groups keep their place unless the snapshot moves
//! them), so a cycle or a depth overflow is found wherever it arises, also through groups the
//! snapshot does not mention. It is pure: the service hands it the current directory, the users
//! behind the openids and the members' stored details.

mod plan;
mod planner;
mod snapshot;

pub use plan::SyncPlan;
pub use planner::plan;
pub use snapshot::{GroupEntry, MemberEntry, Snapshot, SnapshotGroup, SnapshotMember};

use super::values::{Avatar, Nickname, Source};

/// At most this many problems are reported.
pub const MAX_PROBLEMS: usize = 100;

/// Most groups one member of a snapshot may name (as many as a member update may give).
pub const MAX_MEMBER_GROUPS: usize = 1000;

/// `upsert` changes what the snapshot holds and leaves the rest; `replace` also deletes the
/// synced groups and removes the synced members that the snapshot no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    #[default]
    Upsert,
    Replace,
}

impl SyncMode {
    /// `upsert` or `replace`, as a snapshot or a query names the mode.
    pub fn parse(raw: &str) -> Option<SyncMode> {
        match raw {
            "upsert" => Some(SyncMode::Upsert),
            "replace" => Some(SyncMode::Replace),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncOptions {
    pub mode: SyncMode,
    /// Lift the safety brake on mass deletion.
    pub allow_mass_delete: bool,
    /// Validate and plan only: answer the report of what the sync would do, write nothing.
    pub dry_run: bool,
}

/// What a member looks like in the database beyond its placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    pub nickname: Nickname,
    pub avatar: Avatar,
    pub source: Source,
}

/// Why a snapshot cannot be applied: the offending remote id or openid, and the reason in the
/// style of `error.type`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub remote_id: Option<String>,
    pub openid: Option<String>,
    #[serde(rename = "type")]
    pub error_type: &'static str,
    pub message: String,
}

/// What a sync did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    pub groups_created: u64,
    pub groups_renamed: u64,
    pub groups_moved: u64,
    pub groups_reordered: u64,
    pub groups_deleted: u64,
    pub groups_unchanged: u64,
    pub members_added: u64,
    pub members_changed: u64,
    pub members_removed: u64,
    pub members_unchanged: u64,
}

/// Why nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRefusal {
    /// The snapshot itself is wrong.
    Problems(Vec<Problem>),
    /// `replace` would delete more than the brake allows; `deleting` says how much.
    TooManyDeletes { groups: u64, members: u64 },
}

struct Problems(Vec<Problem>);

impl Problems {
    fn group(&mut self, remote_id: &str, error_type: &'static str, message: impl Into<String>) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(Problem {
                remote_id: Some(remote_id.to_owned()),
                openid: None,
                error_type,
                message: message.into(),
            });
        }
    }

    fn member(&mut self, openid: &str, error_type: &'static str, message: impl Into<String>) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(Problem {
                remote_id: None,
                openid: Some(openid.to_owned()),
                error_type,
                message: message.into(),
            });
        }
    }
}

/// Does a replace deleting `deleting` of `synced` rows need `allow_mass_delete`?
/// The brake holds when a sync would delete more than 50 rows and more than 20% of them.
pub fn brake_holds(deleting: u64, synced: u64) -> bool {
    deleting > 50 && deleting * 5 > synced
}
