//! Reading the directory: single groups and their paths, and every listing the contract
//! offers (groups §5.1, members §6), answered from the ordered vectors of the model.

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::HashSet;
use std::sync::Arc;

use super::{
    Directory, Group, GroupFilter, GroupView, Listing, ListingKey, MemberFilter, MemberListing,
    Node, Placement, sibling_key,
};
use crate::domain::RuleError;
use crate::domain::values::{GroupId, Page, ROOT_GROUP, UserId};

impl Directory {
    pub(super) fn valid(&self, id: GroupId) -> Option<&Node> {
        self.groups.get(&id).filter(|node| node.group.is_valid)
    }

    /// Is `id` the root or a valid group of this directory?
    pub fn is_group_or_root(&self, id: GroupId) -> bool {
        id == ROOT_GROUP || self.valid(id).is_some()
    }

    pub(super) fn depth(&self, id: GroupId) -> u32 {
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

    pub(super) fn listing_key(&self, id: GroupId) -> ListingKey {
        let node = &self.groups[&id];
        if node.group.is_valid {
            node.listing_key()
        } else {
            (self.walked_depth(id), Reverse(node.group.order), id)
        }
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

    /// A stored group's row, tombstones included.
    pub fn stored_group(&self, id: GroupId) -> Option<&Group> {
        self.groups.get(&id).map(|node| &node.group)
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

    fn listing(&self) -> &Listing {
        self.listing.get_or_init(|| {
            let mut ids: Vec<GroupId> = self.children.values().flatten().copied().collect();
            ids.sort_unstable_by_key(|id| self.listing_key(*id));
            Listing::from_sorted(&ids)
        })
    }

    /// Valid groups strictly below `id`, in no particular order.
    pub(super) fn descendants(&self, id: GroupId) -> Vec<GroupId> {
        self.descendants_of_any(id, false)
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
        let direct_children = match GroupListing::of(filter) {
            // Fast paths: the ordered vectors are the answer.
            GroupListing::Children(parent) => {
                return Ok(self.page_of(self.children_of(parent), page));
            }
            GroupListing::Valid => {
                let listing = self.listing();
                let rows = listing
                    .range(page.range(listing.len()))
                    .map(|id| &self.groups[&id].group)
                    .collect();
                return Ok((rows, listing.len() as u64));
            }
            // Every group, tombstones included, in listing order: a page is a slice.
            GroupListing::Everything => return Ok(self.page_of(self.full_listing(), page)),
            GroupListing::Filtered { direct_children } => direct_children,
        };

        // General path: start from the fewest candidates an index offers, filter, order, slice.
        let (mut candidates, in_listing_order) = self.candidates(filter, direct_children);
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
                    Some(parent) => *id != parent && self.is_same_or_below(*id, parent),
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
        } else if !in_listing_order {
            candidates.sort_unstable_by_key(|id| self.listing_key(*id));
        }
        Ok(self.page_of(&candidates, page))
    }

    /// How many groups the listing of `filter` examines: none when an ordered vector answers
    /// it, else its candidates (those of the smallest index that applies, or every group for a
    /// subtree or a scan). The service reads a listing that examines many off its request
    /// workers, one at a time per team.
    pub fn listing_work(&self, filter: &GroupFilter) -> usize {
        match GroupListing::of(filter) {
            GroupListing::Filtered { direct_children } => {
                match self.smallest_source(filter, direct_children) {
                    Source::Ids(ids) => ids.len(),
                    Source::Changed(rows) => rows.len(),
                    Source::Subtree(_) | Source::All => self.groups.len(),
                }
            }
            _ => 0,
        }
    }

    /// One page of rows of an ordered list of matches, and their number.
    fn page_of(&self, ordered: &[GroupId], page: Page) -> (Vec<&Group>, u64) {
        let rows = page
            .slice(ordered)
            .iter()
            .map(|id| &self.groups[id].group)
            .collect();
        (rows, ordered.len() as u64)
    }

    /// A superset of a filtered listing's matches ([`Directory::smallest_source`]), as ids;
    /// `true` when they come in listing order already.
    fn candidates(&self, filter: &GroupFilter, direct_children: bool) -> (Vec<GroupId>, bool) {
        let mut ids = match self.smallest_source(filter, direct_children) {
            Source::Ids(ids) => ids.into_owned(),
            Source::Changed(rows) => rows.iter().map(|(_, id)| *id).collect(),
            Source::Subtree(parent) => {
                return (
                    self.descendants_of_any(parent, filter.include_invalid),
                    false,
                );
            }
            Source::All if filter.include_invalid => return (self.full_listing().to_vec(), true),
            Source::All => return (self.listing().iter().collect(), true),
        };
        ids.sort_unstable();
        ids.dedup();
        (ids, false)
    }

    /// Where a filtered listing's candidates come from: the smallest that an index offers
    /// (asked remote ids, a parent's children, groups changed since, groups whose name holds
    /// one of the keyword's trigrams), else a subtree, else every group.
    fn smallest_source(&self, filter: &GroupFilter, direct_children: bool) -> Source<'_> {
        let mut smallest: Option<Source> = None;
        if let Some(remote_ids) = &filter.remote_ids
            && !filter.include_invalid
        {
            Source::Ids(Cow::Owned(
                remote_ids
                    .iter()
                    .filter_map(|remote| self.by_remote.get(remote.as_str()).copied())
                    .collect(),
            ))
            .offer(&mut smallest);
        }
        if let Some(parent) = filter.parent
            && direct_children
        {
            let valid = self.children.get(&parent).map_or(&[][..], Vec::as_slice);
            Source::Ids(if filter.include_invalid {
                Cow::Owned([valid, self.filters.tombstones_under(parent)].concat())
            } else {
                Cow::Borrowed(valid)
            })
            .offer(&mut smallest);
        }
        if let Some(since) = filter.updated_since {
            Source::Changed(self.filters.updated_since(since)).offer(&mut smallest);
        }
        if let Some(word) = &filter.keyword
            && let Some(named) = self.filters.keyword_candidates(word)
        {
            Source::Ids(Cow::Borrowed(named)).offer(&mut smallest);
        }
        smallest.unwrap_or(match filter.parent {
            Some(parent) if parent != ROOT_GROUP => Source::Subtree(parent),
            _ => Source::All,
        })
    }

    /// Groups strictly below `id`, tombstones too if asked, in no particular order.
    fn descendants_of_any(&self, id: GroupId, tombstones: bool) -> Vec<GroupId> {
        let mut found = Vec::new();
        let mut stack = vec![id];
        // The bound only matters for a corrupted (cyclic) tree, which must not hang a request.
        while let Some(current) = stack.pop() {
            if found.len() > self.groups.len() {
                break;
            }
            let valid = self.children.get(&current).map_or(&[][..], Vec::as_slice);
            let deleted = if tombstones {
                self.filters.tombstones_under(current)
            } else {
                &[]
            };
            for below in [valid, deleted] {
                found.extend_from_slice(below);
                stack.extend_from_slice(below);
            }
        }
        found
    }

    /// Every group, tombstones included, in listing order; built once per version.
    fn full_listing(&self) -> &[GroupId] {
        self.full_listing.get_or_init(|| {
            let mut ids: Vec<GroupId> = self.listing().iter().collect();
            ids.reserve(self.filters.tombstone_count());
            ids.extend(self.filters.all_tombstones());
            ids.sort_unstable_by_key(|id| self.listing_key(*id));
            ids
        })
    }

    /// Every member of `group` and of the groups below it, once each, ascending.
    fn subtree_members(&self, group: GroupId) -> Arc<[UserId]> {
        let slot = self
            .subtree_members
            .0
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

    /// Is `candidate` the group `ancestor` or one of its descendants?
    pub(super) fn is_same_or_below(&self, candidate: GroupId, ancestor: GroupId) -> bool {
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
}

/// How a group listing is answered ([`Directory::list_groups`]).
enum GroupListing {
    /// A parent's valid children, in order.
    Children(GroupId),
    /// Every valid group, in listing order.
    Valid,
    /// Every group, tombstones included, in listing order.
    Everything,
    /// Candidates filtered, ordered and sliced ([`Directory::smallest_source`]).
    Filtered { direct_children: bool },
}

impl GroupListing {
    fn of(filter: &GroupFilter) -> GroupListing {
        let direct_children = filter.parent.is_some() && !filter.recursive;
        let unfiltered = filter.remote_ids.is_none()
            && filter.updated_since.is_none()
            && filter.keyword.is_none();
        match filter.parent {
            Some(parent) if unfiltered && !filter.include_invalid && direct_children => {
                GroupListing::Children(parent)
            }
            None | Some(ROOT_GROUP) if unfiltered && !direct_children => {
                if filter.include_invalid {
                    GroupListing::Everything
                } else {
                    GroupListing::Valid
                }
            }
            _ => GroupListing::Filtered { direct_children },
        }
    }
}

/// Where a filtered group listing's candidates come from ([`Directory::smallest_source`]).
enum Source<'a> {
    Ids(Cow<'a, [GroupId]>),
    /// Groups changed since a time, with the time.
    Changed(&'a [(i64, GroupId)]),
    /// The groups below a parent.
    Subtree(GroupId),
    All,
}

impl<'a> Source<'a> {
    /// Become `smallest` if it is smaller (the first of equals stays).
    fn offer(self, smallest: &mut Option<Source<'a>>) {
        if smallest.as_ref().is_none_or(|s| self.len() < s.len()) {
            *smallest = Some(self);
        }
    }

    /// The number of candidates, when an index gives them (`usize::MAX` otherwise).
    fn len(&self) -> usize {
        match self {
            Source::Ids(ids) => ids.len(),
            Source::Changed(rows) => rows.len(),
            Source::Subtree(_) | Source::All => usize::MAX,
        }
    }
}
