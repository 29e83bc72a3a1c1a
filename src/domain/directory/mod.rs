//! The in-memory model of one team's directory: its group tree and who sits where.
//!
//! The database is the source of truth; a [`Directory`] is a faithful copy of one team's rows,
//! tagged with the team's version. It exists for two reasons:
//!
//! * **Rules.** Cycles, depth, remote-id uniqueness, emptiness and seats are decided here, on a
//!   copy known to equal the database at a given version; the store then writes the resulting
//!   [`Change`]s only if the version is still the same (optimistic concurrency), so two writers
//!   can never both pass a check against stale data.
//! * **Speed.** Every listing the contract offers is answered from ordered vectors (the default
//!   group listing from a chunked one, `listing`, so that a write does not shift every group
//!   after its own), so a page is a slice whatever its number, `total` is a length, and
//!   `full_name` is a walk of at most `max_depth` parents. See `docs/DESIGN.md`.
//!
//! This module holds the model and its [`DirectoryBuilder`]; reading and listing live in
//! `queries`, the indexes of the listing filters in `filters`, the `check_*` decisions in
//! `rules`, applying committed [`Change`]s in `apply`, the from-scratch invariant checks of
//! `admin check` in `invariants`, and the property tests in `properties`, against the
//! independent model of the contract in `reference`.

mod apply;
mod filters;
mod invariants;
mod listing;
#[cfg(test)]
mod properties;
mod queries;
#[cfg(test)]
mod reference;
mod rules;

use std::cmp::Reverse;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use filters::FilterIndexes;
use listing::Listing;

use super::values::{
    Avatar, GroupId, GroupName, Nickname, ROOT_GROUP, RemoteId, Role, Source, UserId,
};

/// A group row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: GroupId,
    pub parent_id: GroupId,
    pub source: Source,
    pub remote_id: RemoteId,
    pub name: GroupName,
    pub order: i64,
    pub is_valid: bool,
    /// Unix seconds, UTC.
    pub created_at: i64,
    /// Unix seconds, UTC.
    pub upd_at: i64,
}

/// A group as listed: the row plus its current path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub group: Group,
    pub full_name: String,
}

/// A member's place in the directory as the rules need it (names live in the database only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub role: Role,
    /// Ascending group ids; empty means "at the root only". A boxed slice rather than a
    /// vector: there is one per member, and the spare capacity field cost 8 MB a million.
    pub groups: Box<[GroupId]>,
}

/// A member's stored row (what the store writes for [`Change::PutMember`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub user_id: UserId,
    pub role: Role,
    pub nickname: Nickname,
    pub avatar: Avatar,
    pub source: Source,
}

/// Which of a stored member's name and avatar a [`Change::PutMember`] leaves as stored rather
/// than overwriting them with its row's. A write that is not about them keeps them: it does
/// not read them first, so it cannot write back a name read before another write changed it.
/// A member new to the directory gets its row's name and avatar either way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kept {
    pub nickname: bool,
    pub avatar: bool,
}

impl Kept {
    /// Both written from the row.
    pub const NONE: Kept = Kept {
        nickname: false,
        avatar: false,
    };
    /// Both left as stored.
    pub const BOTH: Kept = Kept {
        nickname: true,
        avatar: true,
    };
}

/// A group named by a change: one that exists, or one created earlier in the same batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupRef {
    Existing(GroupId),
    /// The n-th [`Change::CreateGroup`] of the batch (counting from 0).
    New(usize),
}

/// One persisted change. A batch of changes is written in one transaction, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Insert a group under `parent`; `group.id` and `group.parent_id` are ignored.
    CreateGroup { parent: GroupRef, group: Group },
    /// Overwrite an existing group's row and place it under `parent`; `group.parent_id` is
    /// ignored (the parent may be a group created earlier in the same batch).
    UpdateGroup { group: Group, parent: GroupRef },
    /// Insert or overwrite a member and replace its whole set of groups, or, with `None`, keep
    /// the groups it is in (a member not in the directory yet joins at the root): a sync that
    /// renames a member without moving it writes its row and none of its memberships. A
    /// stored member's name or avatar that `kept` names stays as stored.
    PutMember {
        member: MemberRow,
        groups: Option<Vec<GroupRef>>,
        kept: Kept,
    },
    /// Insert a member, or overwrite a stored member's role and source (its name and avatar
    /// stay as stored), and add it to, or take it out of, one group; its other groups stay, so
    /// the write does not grow with them (a member in hundreds of groups joining one more
    /// writes one membership).
    StepMember {
        member: MemberRow,
        group: GroupId,
        step: GroupStep,
    },
    /// Remove a member from the directory.
    RemoveMember(UserId),
}

/// What a large list of changes writes, for a store that prepares it before taking the
/// database's write lock: every object in it is changed once, by [`Change::CreateGroup`],
/// [`Change::UpdateGroup`], [`Change::PutMember`] or [`Change::RemoveMember`] (a sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staging {
    /// How many groups the changes create.
    pub new_groups: usize,
    /// Whether all they do is add rows nothing holds yet (groups they create, members new to
    /// the directory): then nothing stored is overwritten or deleted.
    pub only_adds: bool,
}

/// Whether a [`Change::StepMember`] adds its member to its group or takes it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStep {
    Join,
    Leave,
}

impl GroupStep {
    /// `groups` (ascending) after this step for `group`, ascending; `None` when the step
    /// changes nothing (joining a group the member is in, leaving one it is not in).
    pub fn applied_to(self, groups: &[GroupId], group: GroupId) -> Option<Vec<GroupId>> {
        let at = match (self, groups.binary_search(&group)) {
            (GroupStep::Join, Err(at)) | (GroupStep::Leave, Ok(at)) => at,
            _ => return None,
        };
        let mut after = groups.to_vec();
        match self {
            GroupStep::Join => after.insert(at, group),
            GroupStep::Leave => {
                after.remove(at);
            }
        }
        Some(after)
    }
}

/// The user a write registers itself (a SCIM create), as its changes and events name it until
/// the store has given it an id ([`with_registered`]); never the id of a stored user.
pub const REGISTERED_USER: UserId = UserId::new(-1);

/// `changes` with [`REGISTERED_USER`] replaced by `user_id`, the id the write's user got.
pub fn with_registered(changes: &[Change], user_id: UserId) -> Vec<Change> {
    let named = |user: UserId| {
        if user == REGISTERED_USER {
            user_id
        } else {
            user
        }
    };
    changes
        .iter()
        .map(|change| match change {
            Change::PutMember {
                member,
                groups,
                kept,
            } => Change::PutMember {
                member: MemberRow {
                    user_id: named(member.user_id),
                    ..member.clone()
                },
                groups: groups.clone(),
                kept: *kept,
            },
            Change::StepMember {
                member,
                group,
                step,
            } => Change::StepMember {
                member: MemberRow {
                    user_id: named(member.user_id),
                    ..member.clone()
                },
                group: *group,
                step: *step,
            },
            Change::RemoveMember(user) => Change::RemoveMember(named(*user)),
            other => other.clone(),
        })
        .collect()
}

/// The filters of a group listing (§5.1 and its extensions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupFilter {
    pub parent: Option<GroupId>,
    pub recursive: bool,
    pub remote_ids: Option<Vec<String>>,
    pub include_invalid: bool,
    pub updated_since: Option<i64>,
    /// Lower-cased already.
    pub keyword: Option<String>,
}

/// The filters of a member listing (§6).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberFilter {
    pub group: GroupId,
    pub recursive: bool,
    pub roles: Option<Vec<Role>>,
}

/// One row of a member listing, before names are fetched from the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberListing {
    pub user_id: UserId,
    pub role: Role,
    /// The listed group, or for group 0 the member's first group (0 if none).
    pub group_id: GroupId,
}

/// What adding a user to a group amounts to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// `true` when the user was not a member of the directory yet.
    pub joins_directory: bool,
    /// The role the member has afterwards (a requested admin role may have been lowered).
    pub role: Role,
    /// The group joined (0: the root, only for a user joining the directory).
    pub group: GroupId,
}

impl Admission {
    /// The change that admits `member`, whose role is this admission's: a user joining the
    /// directory is put in its group; a member joins one more group, whatever its others.
    pub fn change(&self, member: MemberRow) -> Change {
        if self.joins_directory {
            let groups = (self.group != ROOT_GROUP)
                .then_some(GroupRef::Existing(self.group))
                .into_iter()
                .collect();
            Change::PutMember {
                member,
                groups: Some(groups),
                kept: Kept::NONE,
            }
        } else {
            Change::StepMember {
                member,
                group: self.group,
                step: GroupStep::Join,
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Node {
    group: Group,
    /// Depth of a valid group (top level = 1); 0 for tombstones.
    depth: u32,
}

/// Where a group stands in the group listing: depth, then `order` descending, then id.
type ListingKey = (u32, Reverse<i64>, GroupId);

impl Node {
    /// The listing key of a valid group (a tombstone's depth must be walked).
    fn listing_key(&self) -> ListingKey {
        (self.depth, Reverse(self.group.order), self.group.id)
    }
}

/// A map keyed by ids the database hands out. Clients do not choose them, so a fast hash
/// without protection against chosen collisions is safe (and a listing looks up every parent
/// of every group it shows); maps keyed by client strings keep the standard hasher.
type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The members of one subtree, once someone has computed them.
type SubtreeMembers = OnceLock<Arc<[UserId]>>;

/// The members of the subtrees asked for, by subtree root: a memo that a clone of the
/// directory starts again empty.
#[derive(Debug, Default)]
struct SubtreeMemo(Mutex<IdMap<GroupId, Arc<SubtreeMembers>>>);

impl Clone for SubtreeMemo {
    fn clone(&self) -> Self {
        SubtreeMemo::default()
    }
}

/// One team's directory. See the module documentation.
#[derive(Debug, Clone)]
pub struct Directory {
    team_name: String,
    admin_seats: i64,
    version: i64,
    groups: IdMap<GroupId, Node>,
    /// Valid children of each group (0 = top level) in sibling order.
    children: IdMap<GroupId, Vec<GroupId>>,
    /// Valid groups by non-empty remote id.
    by_remote: HashMap<RemoteId, GroupId>,
    /// Every valid group in listing order (depth, order desc, id); built on first use after a
    /// change that moved many groups at once.
    listing: OnceLock<Listing>,
    /// Every group, tombstones included, in listing order; built on first use after a change.
    full_listing: OnceLock<Vec<GroupId>>,
    /// The indexes of the group listing's filters.
    filters: FilterIndexes,
    /// Members of each subtree asked for (`recursive=true`), ascending, computed once per
    /// version: a page of a large subtree is then a slice like any other listing. Callers
    /// arriving while it is computed wait for that computation rather than repeat it.
    subtree_members: SubtreeMemo,
    members: IdMap<UserId, Placement>,
    /// Every member, ascending.
    all_members: Vec<UserId>,
    /// Direct members of each group, ascending.
    group_members: IdMap<GroupId, Vec<UserId>>,
    admins: i64,
}

/// Memory of one group in a loaded [`Directory`], with margin: 240 bytes were allocated per
/// valid group (remote id and name of about 12 characters; 160 per tombstone), counted by
/// allocator over 100,000 groups; the margin covers the listing order built on first use, the
/// search indexes and the allocator's own overhead.
pub const BYTES_PER_GROUP: usize = 300;

/// Memory of one member in a loaded [`Directory`], with margin: 98 bytes were allocated per
/// member in one group, counted over 1,000,000 members.
pub const BYTES_PER_MEMBER: usize = 128;

/// Above this many groups, a move rebuilds the listing order lazily instead of repositioning
/// each moved group.
/// (Tiny under test, so that property tests take both paths.)
const REPOSITION_LIMIT: usize = if cfg!(test) { 2 } else { 256 };

fn sibling_key(group: &Group) -> (Reverse<i64>, GroupId) {
    (Reverse(group.order), group.id)
}

/// Builds a [`Directory`] from its stored rows as the store reads them, so that a large
/// directory is never held twice (once as rows, once as the model): a million members
/// loaded as a list first cost 70 MB more at the peak than the model itself.
pub struct DirectoryBuilder {
    directory: Directory,
}

impl DirectoryBuilder {
    /// `groups` and `members` are how many rows will come (a hint: the maps are sized once
    /// instead of growing, and a map that grows holds its old and new table at once).
    pub fn new(
        team_name: String,
        admin_seats: i64,
        version: i64,
        groups: usize,
        members: usize,
    ) -> DirectoryBuilder {
        DirectoryBuilder {
            directory: Directory {
                team_name,
                admin_seats,
                version,
                groups: IdMap::with_capacity_and_hasher(groups, Default::default()),
                children: IdMap::default(),
                by_remote: HashMap::new(),
                listing: OnceLock::new(),
                full_listing: OnceLock::new(),
                filters: FilterIndexes::default(),
                subtree_members: SubtreeMemo::default(),
                members: IdMap::with_capacity_and_hasher(members, Default::default()),
                all_members: Vec::with_capacity(members),
                group_members: IdMap::default(),
                admins: 0,
            },
        }
    }

    /// A stored group row, in any order.
    pub fn add_group(&mut self, group: Group) {
        self.directory
            .groups
            .insert(group.id, Node { group, depth: 0 });
    }

    /// A stored member with its groups, in any order (each member once).
    pub fn add_member(&mut self, user_id: UserId, placement: Placement) {
        let directory = &mut self.directory;
        directory.all_members.push(user_id);
        for group in &placement.groups {
            directory
                .group_members
                .entry(*group)
                .or_default()
                .push(user_id);
        }
        if placement.role.uses_admin_seat() {
            directory.admins += 1;
        }
        directory.members.insert(user_id, placement);
    }

    /// The directory of every row added.
    pub fn finish(self) -> Directory {
        let mut directory = self.directory;
        let ids: Vec<GroupId> = directory.groups.keys().copied().collect();
        for id in &ids {
            let node = &directory.groups[id];
            directory.filters.push(&node.group);
            if node.group.is_valid {
                directory
                    .children
                    .entry(node.group.parent_id)
                    .or_default()
                    .push(*id);
                if !node.group.remote_id.is_empty() {
                    directory
                        .by_remote
                        .insert(node.group.remote_id.clone(), *id);
                }
            }
        }
        directory.filters.sort();
        let groups_by_id = &directory.groups;
        for list in directory.children.values_mut() {
            list.sort_by_key(|id| sibling_key(&groups_by_id[id].group));
        }
        directory.assign_depths_below(ROOT_GROUP, 0);
        directory.all_members.sort_unstable();
        for list in directory.group_members.values_mut() {
            list.sort_unstable();
        }
        directory
    }
}

impl Directory {
    pub fn team_name(&self) -> &str {
        &self.team_name
    }

    /// The team version this copy equals.
    pub fn version(&self) -> i64 {
        self.version
    }

    pub fn admin_seats(&self) -> i64 {
        self.admin_seats
    }

    pub fn admins_used(&self) -> i64 {
        self.admins
    }

    pub fn member_count(&self) -> usize {
        self.all_members.len()
    }

    pub fn valid_group_count(&self) -> usize {
        self.children.values().map(Vec::len).sum()
    }

    /// Groups stored, tombstones included (O(1), unlike [`Directory::valid_group_count`]).
    pub fn stored_group_count(&self) -> usize {
        self.groups.len()
    }

    /// Make room for `groups` more groups and `members` more members at once (a sync about to
    /// add them), rather than growing the maps step by step: a map that grows holds its old and
    /// new table at once.
    pub fn reserve(&mut self, groups: usize, members: usize) {
        self.groups.reserve(groups);
        self.members.reserve(members);
        self.all_members.reserve(members);
    }

    /// About how many bytes of memory this copy holds, in O(1): [`BYTES_PER_GROUP`] for each
    /// stored group (tombstones included) and [`BYTES_PER_MEMBER`] for each member.
    pub fn estimated_bytes(&self) -> usize {
        self.groups.len() * BYTES_PER_GROUP + self.all_members.len() * BYTES_PER_MEMBER
    }
}

/// Inserts into an ascending list, once.
fn insert_sorted<T: Ord>(list: &mut Vec<T>, item: T) {
    if let Err(at) = list.binary_search(&item) {
        list.insert(at, item);
    }
}

/// Removes from an ascending list.
fn remove_sorted<T: Ord>(list: &mut Vec<T>, item: &T) {
    if let Ok(at) = list.binary_search(item) {
        list.remove(at);
    }
}

/// A valid top-level group row not yet stored (the store gives it its id, the change its parent).
pub fn new_group(
    name: GroupName,
    remote_id: RemoteId,
    order: i64,
    source: Source,
    now: i64,
) -> Group {
    Group {
        id: GroupId::default(),
        parent_id: ROOT_GROUP,
        source,
        remote_id,
        name,
        order,
        is_valid: true,
        created_at: now,
        upd_at: now,
    }
}
