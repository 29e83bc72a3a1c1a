//! A deliberately naive reference implementation of the directory rules of the contract (§5, §6),
//! for the property tests only: ordered maps and loops, every answer recomputed from the rows on
//! each call, and no code shared with [`Directory`](super::Directory), so that the two can only
//! agree by both following the contract.

use std::collections::{BTreeMap, BTreeSet};

use super::{Group, GroupFilter, MemberFilter};
use crate::domain::RuleError;
use crate::domain::values::{GroupId, GroupName, ROOT_GROUP, RemoteId, Role, Source, UserId};

/// A member: role and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub role: Role,
    pub groups: BTreeSet<GroupId>,
}

/// What a group update asks for (§5.4): `to` moves, `from` is the caller's idea of the
/// current parent.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    pub name: Option<GroupName>,
    pub order: Option<i64>,
    pub from: Option<GroupId>,
    pub to: Option<GroupId>,
    pub remote_id: Option<RemoteId>,
}

/// One team's directory as the contract describes it.
#[derive(Debug, Clone)]
pub struct Reference {
    pub team_name: String,
    pub seats: i64,
    pub max_depth: u32,
    /// Every group ever created, tombstones included.
    pub groups: BTreeMap<GroupId, Group>,
    pub members: BTreeMap<UserId, Member>,
}

impl Reference {
    fn is_valid(&self, id: GroupId) -> bool {
        self.groups.get(&id).is_some_and(|g| g.is_valid)
    }

    fn is_group_or_root(&self, id: GroupId) -> bool {
        id == ROOT_GROUP || self.is_valid(id)
    }

    /// The ids above `id`, nearest first (the root not included).
    pub fn ancestors(&self, id: GroupId) -> Vec<GroupId> {
        let mut found = Vec::new();
        let mut current = self.groups[&id].parent_id;
        while current != ROOT_GROUP {
            found.push(current);
            current = self.groups[&current].parent_id;
        }
        found
    }

    /// 0 for the root, 1 for a top-level group.
    fn depth(&self, id: GroupId) -> u32 {
        if id == ROOT_GROUP {
            0
        } else {
            self.ancestors(id).len() as u32 + 1
        }
    }

    pub fn full_name(&self, id: GroupId) -> String {
        let mut names = vec![self.groups[&id].name.as_str()];
        for above in self.ancestors(id) {
            names.push(self.groups[&above].name.as_str());
        }
        names.push(&self.team_name);
        names.reverse();
        names.join("/")
    }

    fn remote_taken(&self, remote_id: &str, by_other_than: GroupId) -> bool {
        !remote_id.is_empty()
            && self
                .groups
                .values()
                .any(|g| g.is_valid && g.remote_id == remote_id && g.id != by_other_than)
    }

    pub fn create(&mut self, id: GroupId, parent: GroupId, row: Group) -> Result<(), RuleError> {
        if !self.is_group_or_root(parent) {
            return Err(RuleError::ParentGroupNotFound);
        }
        if self.depth(parent) + 1 > self.max_depth {
            return Err(RuleError::GroupTooDeep);
        }
        if self.remote_taken(&row.remote_id, ROOT_GROUP) {
            return Err(RuleError::DuplicatedRemoteId);
        }
        let group = Group {
            id,
            parent_id: parent,
            ..row
        };
        self.groups.insert(id, group);
        Ok(())
    }

    /// §5.4.
    pub fn update(&mut self, id: GroupId, edit: Edit, now: i64) -> Result<(), RuleError> {
        let Edit {
            name,
            order,
            from,
            to,
            remote_id,
        } = edit;
        if id == ROOT_GROUP {
            return Err(RuleError::DefaultGroupModified);
        }
        if !self.is_valid(id) {
            return Err(RuleError::GroupNotFound);
        }
        if from.is_some_and(|from| from != self.groups[&id].parent_id) {
            return Err(RuleError::invalid("from_id"));
        }
        if let Some(to) = to {
            if !self.is_group_or_root(to) {
                return Err(RuleError::ParentGroupNotFound);
            }
            if to == id || (to != ROOT_GROUP && self.ancestors(to).contains(&id)) {
                return Err(RuleError::GroupCycle);
            }
            let mut height = 0;
            for g in self.groups.values().filter(|g| g.is_valid) {
                if let Some(at) = self.ancestors(g.id).iter().position(|a| *a == id) {
                    height = height.max(at as u32 + 1);
                }
            }
            if self.depth(to) + 1 + height > self.max_depth {
                return Err(RuleError::GroupTooDeep);
            }
        }
        if let Some(remote) = &remote_id
            && self.remote_taken(remote, id)
        {
            return Err(RuleError::DuplicatedRemoteId);
        }
        let group = self.groups.get_mut(&id).expect("checked above");
        if let Some(name) = name {
            group.name = name;
        }
        if let Some(order) = order {
            group.order = order;
        }
        if let Some(to) = to {
            group.parent_id = to;
        }
        if let Some(remote) = remote_id {
            group.remote_id = remote;
        }
        group.source = Source::Api;
        group.upd_at = now;
        Ok(())
    }

    /// §5.5; `ids` free of duplicates. A tombstone keeps its `source`.
    pub fn delete(&mut self, ids: &[GroupId], now: i64) -> Result<(), RuleError> {
        if ids.contains(&ROOT_GROUP) {
            return Err(RuleError::DefaultGroupModified);
        }
        if ids.iter().any(|id| !self.is_valid(*id)) {
            return Err(RuleError::GroupNotFound);
        }
        for id in ids {
            let other_child = self
                .groups
                .values()
                .any(|g| g.is_valid && g.parent_id == *id && !ids.contains(&g.id));
            let has_members = self.members.values().any(|m| m.groups.contains(id));
            if other_child || has_members {
                return Err(RuleError::GroupNotEmpty);
            }
        }
        for id in ids {
            let group = self.groups.get_mut(id).expect("checked above");
            group.is_valid = false;
            group.upd_at = now;
        }
        Ok(())
    }

    fn admins(&self) -> i64 {
        self.members
            .values()
            .filter(|m| matches!(m.role, Role::TeamAdmin | Role::SurveyAdmin))
            .count() as i64
    }

    /// §6 add.
    pub fn add(&mut self, user: UserId, group: GroupId, role: Role) -> Result<(), RuleError> {
        if !self.is_group_or_root(group) {
            return Err(RuleError::GroupNotFound);
        }
        let admins = self.admins();
        match self.members.get_mut(&user) {
            Some(member) => {
                if group == ROOT_GROUP || member.groups.contains(&group) {
                    return Err(RuleError::ContactsUserExisted);
                }
                member.groups.insert(group);
            }
            None => {
                let admin = matches!(role, Role::TeamAdmin | Role::SurveyAdmin);
                let role = if admin && admins >= self.seats {
                    Role::Member
                } else {
                    role
                };
                let groups = BTreeSet::from_iter((group != ROOT_GROUP).then_some(group));
                self.members.insert(user, Member { role, groups });
            }
        }
        Ok(())
    }

    /// §6 update.
    pub fn update_member(
        &mut self,
        user: UserId,
        groups: Option<&[GroupId]>,
        role: Option<Role>,
    ) -> Result<(), RuleError> {
        let admins = self.admins();
        let Some(member) = self.members.get(&user) else {
            return Err(RuleError::ContactsUserNotFound);
        };
        let mut next = member.clone();
        if let Some(groups) = groups {
            next.groups = groups
                .iter()
                .copied()
                .filter(|g| *g != ROOT_GROUP)
                .collect();
            if next.groups.iter().any(|g| !self.is_valid(*g)) {
                return Err(RuleError::GroupNotFound);
            }
        }
        if let Some(role) = role
            && role != member.role
        {
            if member.role == Role::Owner || role == Role::Owner {
                return Err(RuleError::invalid("role"));
            }
            let is_admin = |r: Role| matches!(r, Role::TeamAdmin | Role::SurveyAdmin);
            if is_admin(role) && !is_admin(member.role) && admins >= self.seats {
                return Err(RuleError::ExceedUserLimit);
            }
            next.role = role;
        }
        self.members.insert(user, next);
        Ok(())
    }

    /// §6 remove; group 0 removes from the directory.
    pub fn remove(&mut self, user: UserId, group: GroupId) -> Result<(), RuleError> {
        if !self.is_group_or_root(group) {
            return Err(RuleError::GroupNotFound);
        }
        let Some(member) = self.members.get_mut(&user) else {
            return Err(RuleError::ContactsUserNotFound);
        };
        if group == ROOT_GROUP {
            if member.role == Role::Owner {
                return Err(RuleError::invalid("owner"));
            }
            self.members.remove(&user);
        } else if !member.groups.remove(&group) {
            return Err(RuleError::ContactsUserNotFound);
        }
        Ok(())
    }

    /// §5.1 with its extensions: every match, in the contract's order.
    pub fn list_groups(&self, filter: &GroupFilter) -> Result<Vec<GroupId>, RuleError> {
        if let Some(parent) = filter.parent
            && !self.is_group_or_root(parent)
        {
            return Err(RuleError::ParentGroupNotFound);
        }
        let mut found: Vec<&Group> = Vec::new();
        for g in self.groups.values() {
            let placed = match filter.parent {
                None => true,
                Some(parent) if !filter.recursive => g.parent_id == parent,
                Some(ROOT_GROUP) => true,
                Some(parent) => self.ancestors(g.id).contains(&parent),
            };
            let keep = (filter.include_invalid || g.is_valid)
                && placed
                && filter
                    .remote_ids
                    .as_ref()
                    .is_none_or(|ids| ids.iter().any(|id| g.remote_id == id.as_str()))
                && filter.updated_since.is_none_or(|t| g.upd_at >= t)
                && filter
                    .keyword
                    .as_ref()
                    .is_none_or(|k| g.name.to_lowercase().contains(k.as_str()));
            if keep {
                found.push(g);
            }
        }
        if filter.parent.is_some() && !filter.recursive {
            found.sort_by_key(|g| (-g.order, g.id));
        } else {
            found.sort_by_key(|g| (self.depth(g.id), -g.order, g.id));
        }
        Ok(found.into_iter().map(|g| g.id).collect())
    }

    /// §6: every match as (user, role, listed group), by user id.
    pub fn list_members(
        &self,
        filter: &MemberFilter,
    ) -> Result<Vec<(UserId, Role, GroupId)>, RuleError> {
        if !self.is_group_or_root(filter.group) {
            return Err(RuleError::GroupNotFound);
        }
        let mut found = Vec::new();
        for (user, member) in &self.members {
            let inside = filter.group == ROOT_GROUP
                || member.groups.iter().any(|g| {
                    *g == filter.group
                        || (filter.recursive && self.ancestors(*g).contains(&filter.group))
                });
            let role_ok = filter
                .roles
                .as_ref()
                .is_none_or(|r| r.contains(&member.role));
            if inside && role_ok {
                let listed = if filter.group == ROOT_GROUP {
                    member.groups.first().copied().unwrap_or(ROOT_GROUP)
                } else {
                    filter.group
                };
                found.push((*user, member.role, listed));
            }
        }
        Ok(found)
    }
}
