//! What a sync will write ([`SyncPlan`]), held compactly: the groups' changes as they are (a
//! directory has far fewer groups than members), the members' as numbers into the snapshot
//! and their groups as one flat list. The changes themselves are made a chunk at a time, as they
//! are written ([`SyncPlan::chunks`]), so a first sync of a million members never holds a
//! million changes with their copied strings.

use super::{Snapshot, SyncReport};
use crate::domain::directory::{Change, GroupRef, MemberRow, Staging};
use crate::domain::values::{Avatar, Nickname, Role, Source, UserId};

/// A member of the snapshot to write: the snapshot's `member`-th, in the groups
/// `refs[refs_at..][..count]` of its plan. Its user is read when the change is made, so that a
/// plan made with stand-ins for users not registered yet holds once they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MemberChange {
    pub member: u32,
    pub count: u32,
    pub refs_at: usize,
    pub role: Role,
}

/// The changes that make a directory equal to a snapshot, in the order they are written: new
/// groups (parents first), changed and deleted groups, the snapshot's members (by user id), the
/// members it removes, and the members it does not manage taken out of the groups it deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncPlan {
    report: SyncReport,
    groups: Vec<Change>,
    members: Vec<MemberChange>,
    refs: Vec<GroupRef>,
    removed: Vec<UserId>,
    adjusted: Vec<Change>,
}

impl SyncPlan {
    pub(super) fn new(
        report: SyncReport,
        groups: Vec<Change>,
        (members, refs): (Vec<MemberChange>, Vec<GroupRef>),
        removed: Vec<UserId>,
        adjusted: Vec<Change>,
    ) -> SyncPlan {
        SyncPlan {
            report,
            groups,
            members,
            refs,
            removed,
            adjusted,
        }
    }

    /// What the sync does.
    pub fn report(&self) -> &SyncReport {
        &self.report
    }

    /// Whether the directory is equal to the snapshot already.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
            && self.members.is_empty()
            && self.removed.is_empty()
            && self.adjusted.is_empty()
    }

    /// What the plan writes, for a store that prepares a large write before locking the
    /// database for it: how many groups it creates, and whether all it does is add rows nothing
    /// holds yet (groups it creates and members new to the directory, nothing changed, moved or
    /// removed: a first sync). Every object the plan writes, it writes once.
    pub fn staging(&self) -> Staging {
        let only_adds = self.report.members_changed == 0
            && self.removed.is_empty()
            && self.adjusted.is_empty()
            && self
                .groups
                .iter()
                .all(|change| matches!(change, Change::CreateGroup { .. }));
        let new_groups = self
            .groups
            .iter()
            .filter(|change| matches!(change, Change::CreateGroup { .. }))
            .count();
        Staging {
            new_groups,
            only_adds,
        }
    }

    /// The plan's changes, in order, in chunks: every group change in the first one (so a
    /// created group is named by its place among the groups the plan creates, in any chunk),
    /// then at most `size` member changes a chunk, by ascending user id. `snapshot` is the one
    /// planned, `users[i]` the user of its `i`-th member.
    pub fn chunks<'a>(
        &'a self,
        snapshot: &'a Snapshot,
        users: &'a [UserId],
        size: usize,
    ) -> impl Iterator<Item = Vec<Change>> + Send + 'a {
        let size = size.max(1);
        let groups = (!self.groups.is_empty()).then(|| self.groups.clone());
        // By ascending user id, whatever the snapshot's order: the member and membership rows
        // are keyed by it, and rows written in key order fill the tables at their end rather
        // than at a random page each.
        let mut order: Vec<u32> =
            (0..u32::try_from(self.members.len()).unwrap_or(u32::MAX)).collect();
        order.sort_by_key(|n| user_of(users, &self.members[*n as usize]));
        let members = (0..order.len()).step_by(size).map(move |start| {
            let run = &order[start..order.len().min(start + size)];
            run.iter()
                .map(|n| self.put(snapshot, users, &self.members[*n as usize]))
                .collect()
        });
        let removed = self
            .removed
            .chunks(size)
            .map(|run| run.iter().copied().map(Change::RemoveMember).collect());
        let adjusted = self.adjusted.chunks(size).map(<[Change]>::to_vec);
        groups
            .into_iter()
            .chain(members)
            .chain(removed)
            .chain(adjusted)
    }

    fn put(&self, snapshot: &Snapshot, users: &[UserId], change: &MemberChange) -> Change {
        let member = snapshot.member(change.member as usize);
        Change::PutMember {
            member: MemberRow {
                user_id: user_of(users, change),
                role: change.role,
                // Checked by the planner.
                nickname: Nickname::from_stored(member.nickname.to_owned()),
                avatar: Avatar::from_stored(member.avatar.to_owned()),
                source: Source::Sync,
            },
            groups: self
                .refs
                .get(change.refs_at..change.refs_at + change.count as usize)
                .unwrap_or_default()
                .to_vec(),
        }
    }
}

/// The user of `change`'s member, from `users` (by place in the snapshot).
fn user_of(users: &[UserId], change: &MemberChange) -> UserId {
    users
        .get(change.member as usize)
        .copied()
        .unwrap_or_default()
}
