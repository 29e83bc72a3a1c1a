//! The rules of the contract, decided on the copy: may a group be created, changed, moved or
//! deleted, may a member join, change or leave (cycles, depth, remote-id uniqueness, emptiness,
//! seats, the owner). Each `check_*` only reads; the caller turns its answer into [`Change`]s.
//!
//! [`Change`]: super::Change

use std::collections::HashSet;

use super::{Admission, Directory, Placement};
use crate::domain::RuleError;
use crate::domain::values::{GroupId, ROOT_GROUP, Role, UserId};

impl Directory {
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
                if group == ROOT_GROUP || placement.groups.binary_search(&group).is_ok() {
                    return Err(RuleError::ContactsUserExisted);
                }
                Ok(Admission {
                    joins_directory: false,
                    role: placement.role,
                    group,
                })
            }
            None => {
                let role = if requested.uses_admin_seat() && self.admins >= self.admin_seats {
                    Role::Member
                } else {
                    requested
                };
                Ok(Admission {
                    joins_directory: true,
                    role,
                    group,
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

    /// May a member leave `group` (0 = the whole directory)? Returns the member's role when it
    /// leaves the group and stays in the directory, `None` when it leaves the directory.
    pub fn check_removal(
        &self,
        user_id: UserId,
        group: GroupId,
    ) -> Result<Option<Role>, RuleError> {
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
        if placement.groups.binary_search(&group).is_err() {
            return Err(RuleError::ContactsUserNotFound);
        }
        Ok(Some(placement.role))
    }
}
