//! What a sync will write ([`SyncPlan`]), held compactly: the groups' changes as they are (a
//! directory has far fewer groups than members), the members' as numbers into the snapshot
//! and their groups as one flat list. The changes themselves are made a chunk at a time, as they
//! are written ([`SyncPlan::chunks`]), so a first sync of a million members never holds a
//! million changes with their copied strings.

use super::{Snapshot, SyncReport};
use crate::domain::directory::{Change, GroupRef, Kept, MemberRow, Staging};
use crate::domain::values::{Avatar, Nickname, Role, Source, UserId};

/// A member of the snapshot to write: the snapshot's `member`-th, in the groups
/// `refs[refs_at..][..count]` of its plan. Its user is read when the change is made, so that a
/// plan made with stand-ins for users not registered yet holds once they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MemberChange {
    pub member: u32,
    pub count: u32,
    /// Where its group references start in the plan's `refs` (32-bit: they are at most the
    /// snapshot's group references, which the readers bound).
    pub refs_at: u32,
    pub role: Role,
    /// Whether the member stays in the groups it is in (then `count` is 0).
    pub keeps_groups: bool,
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
            groups: (!change.keeps_groups).then(|| {
                self.refs
                    .get(change.refs_at as usize..change.refs_at as usize + change.count as usize)
                    .unwrap_or_default()
                    .to_vec()
            }),
            kept: Kept::NONE,
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::{MemberState, SnapshotGroup, SnapshotMember, SyncOptions, plan};
    use super::*;
    use crate::domain::directory::{DirectoryBuilder, Placement, new_group};
    use crate::domain::values::{GroupId, GroupName, RemoteId};

    /// A member the snapshot renames in the groups it is in keeps its memberships as they are
    /// stored; one it moves has them replaced.
    #[test]
    fn a_renamed_member_keeps_its_memberships_and_a_moved_one_is_placed_again() {
        let (sales, ops) = (GroupId::new(10), GroupId::new(11));
        let (ann, bob) = (UserId::new(1), UserId::new(2));
        let mut builder = DirectoryBuilder::new("Team".into(), 10, 1, 2, 2);
        let mut snapshot = Snapshot::default();
        for (id, remote_id) in [(sales, "sales"), (ops, "ops")] {
            let name = GroupName::parse(remote_id).expect("a name");
            let remote = RemoteId::parse(remote_id).expect("a remote id");
            let mut group = new_group(name, remote, 0, Source::Sync, 0);
            group.id = id;
            builder.add_group(group);
            snapshot.push_group(SnapshotGroup {
                remote_id: remote_id.into(),
                name: remote_id.into(),
                parent_remote_id: String::new(),
                order: 0,
            });
        }
        let mut members = HashMap::new();
        for user_id in [ann, bob] {
            let groups = Box::new([sales]);
            builder.add_member(
                user_id,
                Placement {
                    role: Role::Member,
                    groups,
                },
            );
            let nickname = Nickname::from_stored(format!("user {}", user_id.get()));
            let (avatar, source) = (Avatar::default(), Source::Sync);
            members.insert(
                user_id,
                MemberState {
                    nickname,
                    avatar,
                    source,
                },
            );
        }
        let directory = builder.finish();
        for (openid, nickname, group) in [("ann", "Ann Lee", "sales"), ("bob", "user 2", "ops")] {
            snapshot.push_member(SnapshotMember {
                openid: openid.into(),
                nickname: nickname.into(),
                avatar: String::new(),
                role: Role::Member.code(),
                group_remote_ids: vec![group.into()],
            });
        }
        let users = [ann, bob];
        let options = SyncOptions::default();
        let plan = plan(&directory, &snapshot, options, &users, &members, 10, 0).expect("a plan");
        let placed: Vec<(UserId, String, Option<Vec<GroupRef>>)> = plan
            .chunks(&snapshot, &users, 10)
            .flatten()
            .filter_map(|change| match change {
                Change::PutMember { member, groups, .. } => {
                    Some((member.user_id, member.nickname.to_string(), groups))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            placed,
            vec![
                (ann, "Ann Lee".to_owned(), None),
                (
                    bob,
                    "user 2".to_owned(),
                    Some(vec![GroupRef::Existing(ops)])
                ),
            ]
        );
    }
}
