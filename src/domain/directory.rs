//! The in-memory model of one team's directory: its group tree and who sits where.
//!
//! The database is the source of truth; a [`Directory`] is a faithful copy of one team's rows,
//! tagged with the team's version. It exists for two reasons:
//!
//! * **Rules.** Cycles, depth, remote-id uniqueness, emptiness and seats are decided here, on a
//!   copy known to equal the database at a given version; the store then writes the resulting
//!   [`Change`]s only if the version is still the same (optimistic concurrency), so two writers
//!   can never both pass a check against stale data.
//! * **Speed.** Every listing the contract offers is answered from ordered vectors, so a page is
//!   an O(1) slice whatever its number, `total` is a length, and `full_name` is a walk of at most
//!   `max_depth` parents. See `docs/DESIGN.md`.

use std::cmp::Reverse;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};

use super::RuleError;
use super::values::{GroupId, Page, ROOT_GROUP, Role, Source, UserId};

/// A group row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: GroupId,
    pub parent_id: GroupId,
    pub source: Source,
    pub remote_id: String,
    pub name: String,
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
    pub nickname: String,
    pub avatar: String,
    pub source: Source,
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
    /// Insert or overwrite a member and replace its whole set of groups.
    PutMember {
        member: MemberRow,
        groups: Vec<GroupRef>,
    },
    /// Remove a member from the directory.
    RemoveMember(UserId),
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
    /// The member's groups afterwards.
    pub groups: Vec<GroupId>,
}

#[derive(Debug, Clone)]
struct Node {
    group: Group,
    /// Depth of a valid group (top level = 1); 0 for tombstones.
    depth: u32,
}

/// A map keyed by ids the database hands out. Clients do not choose them, so a fast hash
/// without protection against chosen collisions is safe (and a listing looks up every parent
/// of every group it shows); maps keyed by client strings keep the standard hasher.
type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The members of one subtree, once someone has computed them.
type SubtreeMembers = OnceLock<Arc<[UserId]>>;

/// One team's directory. See the module documentation.
#[derive(Debug)]
pub struct Directory {
    team_name: String,
    admin_seats: i64,
    version: i64,
    groups: IdMap<GroupId, Node>,
    /// Valid children of each group (0 = top level) in sibling order.
    children: IdMap<GroupId, Vec<GroupId>>,
    /// Valid groups by non-empty remote id.
    by_remote: HashMap<String, GroupId>,
    /// Every valid group in listing order (depth, order desc, id); built on first use after a
    /// change that moved many groups at once.
    listing: OnceLock<Vec<GroupId>>,
    /// Members of each subtree asked for (`recursive=true`), ascending, computed once per
    /// version: a page of a large subtree is then a slice like any other listing. Callers
    /// arriving while it is computed wait for that computation rather than repeat it.
    subtree_members: Mutex<IdMap<GroupId, Arc<SubtreeMembers>>>,
    members: IdMap<UserId, Placement>,
    /// Every member, ascending.
    all_members: Vec<UserId>,
    /// Direct members of each group, ascending.
    group_members: IdMap<GroupId, Vec<UserId>>,
    admins: i64,
}

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
                subtree_members: Mutex::new(IdMap::default()),
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

    // ----- reading -------------------------------------------------------------------------

    fn valid(&self, id: GroupId) -> Option<&Node> {
        self.groups.get(&id).filter(|node| node.group.is_valid)
    }

    /// Is `id` the root or a valid group of this directory?
    pub fn is_group_or_root(&self, id: GroupId) -> bool {
        id == ROOT_GROUP || self.valid(id).is_some()
    }

    fn depth(&self, id: GroupId) -> u32 {
        if id == ROOT_GROUP {
            0
        } else {
            self.groups.get(&id).map_or(0, |node| node.depth)
        }
    }

    /// Depth of any group, tombstones included, by walking its parents.
    fn walked_depth(&self, id: GroupId) -> u32 {
        let mut depth = 0;
        let mut current = id;
        while current != ROOT_GROUP && depth as usize <= self.groups.len() {
            depth += 1;
            current = self
                .groups
                .get(&current)
                .map_or(ROOT_GROUP, |n| n.group.parent_id);
        }
        depth
    }

    fn listing_key(&self, id: GroupId) -> (u32, Reverse<i64>, GroupId) {
        let node = &self.groups[&id];
        let depth = if node.group.is_valid {
            node.depth
        } else {
            self.walked_depth(id)
        };
        (depth, Reverse(node.group.order), id)
    }

    /// Appends the names on the path to `id`, its own first and the top-level group's last:
    /// `full_name` read backwards, for callers that write it without making the string.
    pub fn names_upwards<'a>(&'a self, id: GroupId, names: &mut Vec<&'a str>) {
        let start = names.len();
        let mut current = id;
        while current != ROOT_GROUP && names.len() - start <= self.groups.len() {
            match self.groups.get(&current) {
                Some(node) => {
                    names.push(node.group.name.as_str());
                    current = node.group.parent_id;
                }
                None => break,
            }
        }
    }

    /// `team name / ancestors... / name`, from current names.
    pub fn full_name(&self, id: GroupId) -> String {
        let mut names = Vec::new();
        self.names_upwards(id, &mut names);
        let mut full = String::with_capacity(
            self.team_name.len() + names.iter().map(|n| n.len() + 1).sum::<usize>(),
        );
        full.push_str(&self.team_name);
        for name in names.iter().rev() {
            full.push('/');
            full.push_str(name);
        }
        full
    }

    fn view(&self, id: GroupId) -> GroupView {
        GroupView {
            group: self.groups[&id].group.clone(),
            full_name: self.full_name(id),
        }
    }

    /// A valid group.
    pub fn group(&self, id: GroupId) -> Result<GroupView, RuleError> {
        self.valid(id)
            .map(|node| self.view(node.group.id))
            .ok_or(RuleError::GroupNotFound)
    }

    /// A valid group's row by its remote id.
    pub fn group_by_remote_id(&self, remote_id: &str) -> Option<&Group> {
        self.by_remote
            .get(remote_id)
            .map(|id| &self.groups[id].group)
    }

    /// Every group row, tombstones included, in no particular order.
    pub fn all_groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values().map(|node| &node.group)
    }

    /// Every member's placement, in no particular order.
    pub fn placements(&self) -> impl Iterator<Item = (UserId, &Placement)> {
        self.members.iter().map(|(id, placement)| (*id, placement))
    }

    /// The direct members of a group, ascending (none for an unknown group).
    pub fn direct_members(&self, id: GroupId) -> &[UserId] {
        self.group_members.get(&id).map_or(&[], Vec::as_slice)
    }

    /// The valid child groups of a group (0 = the top level), in sibling order.
    pub fn children_of(&self, id: GroupId) -> &[GroupId] {
        self.children.get(&id).map_or(&[], Vec::as_slice)
    }

    pub fn placement(&self, user_id: UserId) -> Option<&Placement> {
        self.members.get(&user_id)
    }

    fn listing(&self) -> &[GroupId] {
        self.listing.get_or_init(|| {
            let mut ids: Vec<GroupId> = self.children.values().flatten().copied().collect();
            ids.sort_unstable_by_key(|id| self.listing_key(*id));
            ids
        })
    }

    /// Valid groups strictly below `id`, in no particular order.
    fn descendants(&self, id: GroupId) -> Vec<GroupId> {
        let mut found = Vec::new();
        let mut stack = vec![id];
        // The bound only matters for a corrupted (cyclic) tree, which must not hang a request.
        while let Some(current) = stack.pop() {
            if found.len() > self.groups.len() {
                break;
            }
            if let Some(children) = self.children.get(&current) {
                found.extend_from_slice(children);
                stack.extend_from_slice(children);
            }
        }
        found
    }

    /// One page of groups, borrowed (a page is written straight from the directory), and the
    /// number of all matches (§5.1).
    pub fn list_groups(
        &self,
        filter: &GroupFilter,
        page: Page,
    ) -> Result<(Vec<&Group>, u64), RuleError> {
        if let Some(parent) = filter.parent
            && !self.is_group_or_root(parent)
        {
            return Err(RuleError::ParentGroupNotFound);
        }
        let direct_children = filter.parent.is_some() && !filter.recursive;
        let plain = filter.remote_ids.is_none()
            && !filter.include_invalid
            && filter.updated_since.is_none()
            && filter.keyword.is_none();

        // Fast paths: the ordered vectors are the answer.
        if plain {
            let ordered: &[GroupId] = match filter.parent {
                Some(parent) if direct_children => {
                    self.children.get(&parent).map_or(&[], Vec::as_slice)
                }
                None | Some(ROOT_GROUP) => self.listing(),
                Some(_) => &[],
            };
            if direct_children || filter.parent.is_none() || filter.parent == Some(ROOT_GROUP) {
                let rows = page
                    .slice(ordered)
                    .iter()
                    .map(|id| &self.groups[id].group)
                    .collect();
                return Ok((rows, ordered.len() as u64));
            }
        }

        // General path: gather candidates, filter, order, slice.
        let mut candidates: Vec<GroupId> = match (&filter.remote_ids, filter.parent) {
            (Some(remote_ids), _) if !filter.include_invalid => {
                let mut ids: Vec<GroupId> = remote_ids
                    .iter()
                    .filter_map(|remote| self.by_remote.get(remote).copied())
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                ids
            }
            (_, Some(parent)) if direct_children && !filter.include_invalid => {
                self.children.get(&parent).cloned().unwrap_or_default()
            }
            (_, Some(parent)) if parent != ROOT_GROUP && !filter.include_invalid => {
                self.descendants(parent)
            }
            _ => self
                .groups
                .values()
                .filter(|node| filter.include_invalid || node.group.is_valid)
                .map(|node| node.group.id)
                .collect(),
        };
        // Valid descendants come from the index; tombstones (`include_invalid`) are found by
        // walking each candidate's parents instead.
        let subtree: Option<HashSet<GroupId>> = match filter.parent {
            Some(parent) if filter.recursive && parent != ROOT_GROUP && !filter.include_invalid => {
                Some(self.descendants(parent).into_iter().collect())
            }
            _ => None,
        };
        let wanted_remote: Option<HashSet<&str>> = filter
            .remote_ids
            .as_ref()
            .map(|ids| ids.iter().map(String::as_str).collect());
        candidates.retain(|id| {
            let group = &self.groups[id].group;
            (filter.include_invalid || group.is_valid)
                && match filter.parent {
                    Some(parent) if direct_children => group.parent_id == parent,
                    Some(ROOT_GROUP) | None => true,
                    Some(parent) => match &subtree {
                        Some(set) => set.contains(id),
                        None => *id != parent && self.is_same_or_below(*id, parent),
                    },
                }
                && wanted_remote
                    .as_ref()
                    .is_none_or(|set| set.contains(group.remote_id.as_str()))
                && filter
                    .updated_since
                    .is_none_or(|since| group.upd_at >= since)
                && filter
                    .keyword
                    .as_ref()
                    .is_none_or(|word| group.name.to_lowercase().contains(word.as_str()))
        });
        if direct_children {
            candidates.sort_unstable_by_key(|id| sibling_key(&self.groups[id].group));
        } else {
            candidates.sort_unstable_by_key(|id| self.listing_key(*id));
        }
        let rows = page
            .slice(&candidates)
            .iter()
            .map(|id| &self.groups[id].group)
            .collect();
        Ok((rows, candidates.len() as u64))
    }

    /// Every member of `group` and of the groups below it, once each, ascending.
    fn subtree_members(&self, group: GroupId) -> Arc<[UserId]> {
        let slot = self
            .subtree_members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(group)
            .or_default()
            .clone();
        slot.get_or_init(|| {
            let mut ids: Vec<UserId> = std::iter::once(group)
                .chain(self.descendants(group))
                .filter_map(|group| self.group_members.get(&group))
                .flatten()
                .copied()
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids.into()
        })
        .clone()
    }

    /// One page of members and the number of all matches (§6).
    pub fn list_members(
        &self,
        filter: &MemberFilter,
        page: Page,
    ) -> Result<(Vec<MemberListing>, u64), RuleError> {
        if !self.is_group_or_root(filter.group) {
            return Err(RuleError::GroupNotFound);
        }
        let union;
        let base: &[UserId] = if filter.group == ROOT_GROUP {
            &self.all_members
        } else if filter.recursive {
            union = self.subtree_members(filter.group);
            &union
        } else {
            self.group_members
                .get(&filter.group)
                .map_or(&[], Vec::as_slice)
        };
        let listing = |user_id: UserId| {
            let placement = &self.members[&user_id];
            MemberListing {
                user_id,
                role: placement.role,
                group_id: if filter.group == ROOT_GROUP {
                    placement.groups.first().copied().unwrap_or(ROOT_GROUP)
                } else {
                    filter.group
                },
            }
        };
        match &filter.roles {
            None => Ok((
                page.slice(base).iter().map(|id| listing(*id)).collect(),
                base.len() as u64,
            )),
            Some(roles) => {
                let matching: Vec<UserId> = base
                    .iter()
                    .copied()
                    .filter(|id| roles.contains(&self.members[id].role))
                    .collect();
                Ok((
                    page.slice(&matching)
                        .iter()
                        .map(|id| listing(*id))
                        .collect(),
                    matching.len() as u64,
                ))
            }
        }
    }

    // ----- rules -----------------------------------------------------------------------------

    /// May a group be created under `parent` with `remote_id`?
    pub fn check_create(
        &self,
        parent: GroupId,
        remote_id: &str,
        max_depth: u32,
    ) -> Result<(), RuleError> {
        if !self.is_group_or_root(parent) {
            return Err(RuleError::ParentGroupNotFound);
        }
        if self.depth(parent) + 1 > max_depth {
            return Err(RuleError::GroupTooDeep);
        }
        if !remote_id.is_empty() && self.by_remote.contains_key(remote_id) {
            return Err(RuleError::DuplicatedRemoteId);
        }
        Ok(())
    }

    /// May group `id` be changed as asked? `from` is the caller's idea of the current parent,
    /// `to` the new parent, `remote_id` a new remote id.
    pub fn check_update(
        &self,
        id: GroupId,
        from: Option<GroupId>,
        to: Option<GroupId>,
        remote_id: Option<&str>,
        max_depth: u32,
    ) -> Result<(), RuleError> {
        if id == ROOT_GROUP {
            return Err(RuleError::DefaultGroupModified);
        }
        let node = self.valid(id).ok_or(RuleError::GroupNotFound)?;
        if let Some(from) = from
            && from != node.group.parent_id
        {
            return Err(RuleError::invalid(
                "from_id is not the group's current parent",
            ));
        }
        if let Some(to) = to {
            if !self.is_group_or_root(to) {
                return Err(RuleError::ParentGroupNotFound);
            }
            if self.is_same_or_below(to, id) {
                return Err(RuleError::GroupCycle);
            }
            let height = self
                .descendants(id)
                .iter()
                .map(|d| self.depth(*d) - node.depth)
                .max()
                .unwrap_or(0);
            if self.depth(to) + 1 + height > max_depth {
                return Err(RuleError::GroupTooDeep);
            }
        }
        if let Some(remote) = remote_id
            && !remote.is_empty()
            && self.by_remote.get(remote).is_some_and(|owner| *owner != id)
        {
            return Err(RuleError::DuplicatedRemoteId);
        }
        Ok(())
    }

    /// Is `candidate` the group `ancestor` or one of its descendants?
    fn is_same_or_below(&self, candidate: GroupId, ancestor: GroupId) -> bool {
        let mut current = candidate;
        let mut steps = 0;
        while current != ROOT_GROUP && steps <= self.groups.len() {
            if current == ancestor {
                return true;
            }
            current = self
                .groups
                .get(&current)
                .map_or(ROOT_GROUP, |n| n.group.parent_id);
            steps += 1;
        }
        false
    }

    /// May these groups be deleted together (§5.5)? `ids` must be free of duplicates.
    pub fn check_delete(&self, ids: &[GroupId]) -> Result<(), RuleError> {
        if ids.contains(&ROOT_GROUP) {
            return Err(RuleError::DefaultGroupModified);
        }
        if ids.iter().any(|id| self.valid(*id).is_none()) {
            return Err(RuleError::GroupNotFound);
        }
        let batch: HashSet<GroupId> = ids.iter().copied().collect();
        for id in ids {
            let has_other_children = self
                .children
                .get(id)
                .is_some_and(|children| children.iter().any(|c| !batch.contains(c)));
            let has_members = self.group_members.get(id).is_some_and(|m| !m.is_empty());
            if has_other_children || has_members {
                return Err(RuleError::GroupNotEmpty);
            }
        }
        Ok(())
    }

    /// What adding `user_id` to `group` (0 = the root) means, with the requested role.
    /// An existing member keeps its role; a new member asking for an admin role with no seat
    /// left becomes a regular member (the reference behaviour).
    pub fn check_admission(
        &self,
        user_id: UserId,
        group: GroupId,
        requested: Role,
    ) -> Result<Admission, RuleError> {
        if !self.is_group_or_root(group) {
            return Err(RuleError::GroupNotFound);
        }
        match self.members.get(&user_id) {
            Some(placement) => {
                if group == ROOT_GROUP || placement.groups.contains(&group) {
                    return Err(RuleError::ContactsUserExisted);
                }
                let mut groups = placement.groups.to_vec();
                groups.push(group);
                groups.sort_unstable();
                Ok(Admission {
                    joins_directory: false,
                    role: placement.role,
                    groups,
                })
            }
            None => {
                let role = if requested.uses_admin_seat() && self.admins >= self.admin_seats {
                    Role::Member
                } else {
                    requested
                };
                let groups = if group == ROOT_GROUP {
                    Vec::new()
                } else {
                    vec![group]
                };
                Ok(Admission {
                    joins_directory: true,
                    role,
                    groups,
                })
            }
        }
    }

    /// May a member get this new group set and role? Returns the placement afterwards.
    pub fn check_member_update(
        &self,
        user_id: UserId,
        groups: Option<&[GroupId]>,
        role: Option<Role>,
    ) -> Result<Placement, RuleError> {
        let current = self
            .members
            .get(&user_id)
            .ok_or(RuleError::ContactsUserNotFound)?;
        let mut next = current.clone();
        if let Some(groups) = groups {
            let mut wanted: Vec<GroupId> = groups
                .iter()
                .copied()
                .filter(|g| *g != ROOT_GROUP)
                .collect();
            wanted.sort_unstable();
            wanted.dedup();
            if wanted.iter().any(|g| self.valid(*g).is_none()) {
                return Err(RuleError::GroupNotFound);
            }
            next.groups = wanted.into();
        }
        if let Some(role) = role
            && role != current.role
        {
            if current.role == Role::Owner {
                return Err(RuleError::invalid("the owner's role cannot change"));
            }
            if role == Role::Owner {
                return Err(RuleError::invalid("role must be 2, 3 or 4"));
            }
            if role.uses_admin_seat()
                && !current.role.uses_admin_seat()
                && self.admins >= self.admin_seats
            {
                return Err(RuleError::ExceedUserLimit);
            }
            next.role = role;
        }
        Ok(next)
    }

    /// May a member leave `group` (0 = the whole directory)? Returns the groups afterwards,
    /// or `None` when the member leaves the directory.
    pub fn check_removal(
        &self,
        user_id: UserId,
        group: GroupId,
    ) -> Result<Option<Vec<GroupId>>, RuleError> {
        if !self.is_group_or_root(group) {
            return Err(RuleError::GroupNotFound);
        }
        let placement = self
            .members
            .get(&user_id)
            .ok_or(RuleError::ContactsUserNotFound)?;
        if group == ROOT_GROUP {
            if placement.role == Role::Owner {
                return Err(RuleError::invalid("the owner cannot be removed"));
            }
            return Ok(None);
        }
        if !placement.groups.contains(&group) {
            return Err(RuleError::ContactsUserNotFound);
        }
        Ok(Some(
            placement
                .groups
                .iter()
                .copied()
                .filter(|g| *g != group)
                .collect(),
        ))
    }

    // ----- applying committed changes ------------------------------------------------------

    /// Apply a batch the store has committed. `created` holds the ids the store gave to the
    /// batch's `CreateGroup` changes, in order; `version` is the team's version afterwards.
    pub fn apply(&mut self, changes: &[Change], created: &[GroupId], version: i64) {
        let resolve = |group: &GroupRef| match group {
            GroupRef::Existing(id) => *id,
            GroupRef::New(index) => created[*index],
        };
        let mut next_created = 0;
        for change in changes {
            match change {
                Change::CreateGroup { parent, group } => {
                    let mut group = group.clone();
                    group.id = created[next_created];
                    group.parent_id = resolve(parent);
                    next_created += 1;
                    self.put_group(group);
                }
                Change::UpdateGroup { group, parent } => {
                    let mut group = group.clone();
                    group.parent_id = resolve(parent);
                    self.put_group(group);
                }
                Change::PutMember { member, groups } => {
                    let mut ids: Vec<GroupId> = groups.iter().map(resolve).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    self.put_member(
                        member.user_id,
                        Placement {
                            role: member.role,
                            groups: ids.into(),
                        },
                    );
                }
                Change::RemoveMember(user_id) => self.remove_member(*user_id),
            }
        }
        self.version = version;
        self.subtree_members
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    fn put_group(&mut self, group: Group) {
        let id = group.id;
        let old = self.groups.get(&id).cloned();
        let moved = old.as_ref().is_some_and(|o| {
            o.group.is_valid && group.is_valid && o.group.parent_id != group.parent_id
        });
        if let Some(old) = &old
            && old.group.is_valid
        {
            self.unindex(old);
        }
        let depth = if group.is_valid {
            self.depth(group.parent_id) + 1
        } else {
            0
        };
        let is_valid = group.is_valid;
        self.groups.insert(id, Node { group, depth });
        if is_valid {
            let node = self.groups[&id].clone();
            self.index(&node);
        }
        if moved {
            let below = self.descendants(id);
            let reposition = below.len() <= REPOSITION_LIMIT && self.listing.get().is_some();
            if !reposition {
                self.listing = OnceLock::new();
            }
            for d in below {
                if reposition {
                    self.remove_from_listing(d);
                }
                let parent = self.groups[&d].group.parent_id;
                let depth = self.depth(parent) + 1;
                if let Some(node) = self.groups.get_mut(&d) {
                    node.depth = depth;
                }
                if reposition {
                    self.insert_into_listing(d);
                }
            }
        }
    }

    fn assign_depths_below(&mut self, id: GroupId, depth: u32) {
        let mut stack = vec![(id, depth)];
        while let Some((current, depth)) = stack.pop() {
            if let Some(children) = self.children.get(&current) {
                for child in children {
                    stack.push((*child, depth + 1));
                }
            }
            if current != ROOT_GROUP
                && let Some(node) = self.groups.get_mut(&current)
            {
                node.depth = depth;
            }
        }
    }

    fn index(&mut self, node: &Node) {
        let group = &node.group;
        let key = sibling_key(group);
        let groups = &self.groups;
        let siblings = self.children.entry(group.parent_id).or_default();
        let at = siblings
            .binary_search_by_key(&key, |id| sibling_key(&groups[id].group))
            .unwrap_or_else(|at| at);
        siblings.insert(at, group.id);
        if !group.remote_id.is_empty() {
            self.by_remote.insert(group.remote_id.clone(), group.id);
        }
        self.insert_into_listing(group.id);
    }

    fn unindex(&mut self, node: &Node) {
        let group = &node.group;
        self.remove_from_listing(group.id);
        let key = sibling_key(group);
        let groups = &self.groups;
        if let Some(siblings) = self.children.get_mut(&group.parent_id) {
            if let Ok(at) = siblings.binary_search_by_key(&key, |id| sibling_key(&groups[id].group))
            {
                siblings.remove(at);
            }
            if siblings.is_empty() {
                self.children.remove(&group.parent_id);
            }
        }
        if !group.remote_id.is_empty() && self.by_remote.get(&group.remote_id) == Some(&group.id) {
            self.by_remote.remove(&group.remote_id);
        }
    }

    /// Uses the group's current row and depth as its key.
    fn insert_into_listing(&mut self, id: GroupId) {
        let key = self.listing_key(id);
        let groups = &self.groups;
        if let Some(listing) = self.listing.get_mut() {
            let at = listing
                .binary_search_by_key(&key, |other| {
                    let node = &groups[other];
                    (node.depth, Reverse(node.group.order), *other)
                })
                .unwrap_or_else(|at| at);
            listing.insert(at, id);
        }
    }

    /// Uses the group's current row and depth as its key: call before changing either.
    fn remove_from_listing(&mut self, id: GroupId) {
        let key = self.listing_key(id);
        let groups = &self.groups;
        if let Some(listing) = self.listing.get_mut()
            && let Ok(at) = listing.binary_search_by_key(&key, |other| {
                let node = &groups[other];
                (node.depth, Reverse(node.group.order), *other)
            })
        {
            listing.remove(at);
        }
    }

    fn put_member(&mut self, user_id: UserId, placement: Placement) {
        let old = self.members.get(&user_id).cloned();
        match &old {
            Some(old) => {
                for group in old.groups.iter().filter(|g| !placement.groups.contains(g)) {
                    if let Some(list) = self.group_members.get_mut(group) {
                        remove_sorted(list, user_id);
                        if list.is_empty() {
                            self.group_members.remove(group);
                        }
                    }
                }
                if old.role.uses_admin_seat() {
                    self.admins -= 1;
                }
            }
            None => insert_sorted(&mut self.all_members, user_id),
        }
        for group in &placement.groups {
            let already = old.as_ref().is_some_and(|o| o.groups.contains(group));
            if !already {
                insert_sorted(self.group_members.entry(*group).or_default(), user_id);
            }
        }
        if placement.role.uses_admin_seat() {
            self.admins += 1;
        }
        self.members.insert(user_id, placement);
    }

    fn remove_member(&mut self, user_id: UserId) {
        if let Some(old) = self.members.remove(&user_id) {
            for group in &old.groups {
                if let Some(list) = self.group_members.get_mut(group) {
                    remove_sorted(list, user_id);
                    if list.is_empty() {
                        self.group_members.remove(group);
                    }
                }
            }
            if old.role.uses_admin_seat() {
                self.admins -= 1;
            }
            remove_sorted(&mut self.all_members, user_id);
        }
    }

    // ----- checking ------------------------------------------------------------------------

    /// Every invariant of the directory, checked from scratch; one line per violation.
    pub fn violations(&self, max_depth: u32) -> Vec<String> {
        let mut problems = Vec::new();
        let mut seen_remote: HashMap<&str, GroupId> = HashMap::new();
        for node in self.groups.values() {
            let group = &node.group;
            if !group.is_valid {
                continue;
            }
            // Walk to the root; a valid group's ancestors must be valid and finite.
            let mut depth = 0u32;
            let mut current = group.id;
            let mut broken = false;
            while current != ROOT_GROUP {
                depth += 1;
                if depth as usize > self.groups.len() {
                    problems.push(format!("group {} is in a cycle", group.id));
                    broken = true;
                    break;
                }
                match self.valid(current) {
                    Some(n) => current = n.group.parent_id,
                    None => {
                        problems.push(format!(
                            "group {} has a missing or deleted ancestor {}",
                            group.id, current
                        ));
                        broken = true;
                        break;
                    }
                }
            }
            if broken {
                continue;
            }
            if depth > max_depth {
                problems.push(format!("group {} is {} deep", group.id, depth));
            }
            if depth != node.depth {
                problems.push(format!("group {} has a stale cached depth", group.id));
            }
            if !group.remote_id.is_empty()
                && let Some(other) = seen_remote.insert(&group.remote_id, group.id)
            {
                problems.push(format!(
                    "groups {} and {} share remote_id {:?}",
                    other, group.id, group.remote_id
                ));
            }
        }
        let mut admins = 0;
        for (user_id, placement) in &self.members {
            if placement.role.uses_admin_seat() {
                admins += 1;
            }
            for group in &placement.groups {
                if self.valid(*group).is_none() {
                    problems.push(format!("member {user_id} sits in missing group {group}"));
                }
            }
        }
        if admins != self.admins {
            problems.push(format!(
                "admin seat count is {} but {} members hold admin roles",
                self.admins, admins
            ));
        }
        for (group, list) in &self.group_members {
            if list.is_empty() {
                problems.push(format!("group {group} keeps an empty member list"));
            }
            for user_id in list {
                let placed = self
                    .members
                    .get(user_id)
                    .is_some_and(|p| p.groups.contains(group));
                if !placed {
                    problems.push(format!("group {group} lists {user_id}, who is not in it"));
                }
            }
        }
        for (user_id, placement) in &self.members {
            for group in &placement.groups {
                let listed = self
                    .group_members
                    .get(group)
                    .is_some_and(|list| list.binary_search(user_id).is_ok());
                if !listed {
                    problems.push(format!(
                        "member {user_id} is missing from group {group}'s list"
                    ));
                }
            }
        }
        if self.all_members.len() != self.members.len() {
            problems.push("the member listing and the member set differ".to_owned());
        }
        if let Some(listing) = self.listing.get() {
            let mut fresh: Vec<GroupId> = self.children.values().flatten().copied().collect();
            fresh.sort_unstable_by_key(|id| self.listing_key(*id));
            if *listing != fresh {
                problems.push("the cached listing order is stale".to_owned());
            }
        }
        problems
    }
}

fn insert_sorted(list: &mut Vec<UserId>, id: UserId) {
    if let Err(at) = list.binary_search(&id) {
        list.insert(at, id);
    }
}

fn remove_sorted(list: &mut Vec<UserId>, id: UserId) {
    if let Ok(at) = list.binary_search(&id) {
        list.remove(at);
    }
}

/// A valid top-level group row not yet stored (the store gives it its id, the change its parent).
pub fn new_group(name: String, remote_id: String, order: i64, source: Source, now: i64) -> Group {
    Group {
        id: 0,
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
