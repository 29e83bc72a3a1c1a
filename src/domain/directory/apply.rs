//! Applying a committed batch of [`Change`]s to the copy, keeping every index (children,
//! remote ids, listing order, depths, member lists, seat count) equal to what a fresh load of
//! the same rows would build.

use std::sync::OnceLock;

use super::{
    Change, Directory, Group, GroupRef, GroupStep, Node, Placement, REPOSITION_LIMIT,
    insert_sorted, remove_sorted, sibling_key,
};
use crate::domain::values::{GroupId, ROOT_GROUP, Role, UserId};

impl Directory {
    /// Apply a batch the store has committed. `created` holds the ids the store gave to the
    /// batch's `CreateGroup` changes, in order; `version` is the team's version afterwards.
    pub fn apply(&mut self, changes: &[Change], created: &[GroupId], version: i64) {
        let resolve = |group: &GroupRef| match group {
            GroupRef::Existing(id) => *id,
            GroupRef::New(index) => created[*index],
        };
        let mut next_created = 0;
        // Taken out of the list of all members once, after the batch: one at a time, each
        // would shift the rest of a list of a million (a sync removing 100,000 members spent
        // 20 s moving memory).
        let mut gone = Vec::new();
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
                Change::PutMember { member, groups, .. } => {
                    let groups = match groups {
                        Some(groups) => {
                            let mut ids: Vec<GroupId> = groups.iter().map(resolve).collect();
                            ids.sort_unstable();
                            ids.dedup();
                            ids.into()
                        }
                        None => self
                            .members
                            .get(&member.user_id)
                            .map(|placement| placement.groups.clone())
                            .unwrap_or_default(),
                    };
                    let role = member.role;
                    self.put_member(member.user_id, Placement { role, groups });
                }
                Change::StepMember {
                    member,
                    group,
                    step,
                } => self.step_member(member.user_id, member.role, *group, *step),
                Change::RemoveMember(user_id) => {
                    if self.remove_member(*user_id) {
                        gone.push(*user_id);
                    }
                }
            }
        }
        if !gone.is_empty() {
            gone.sort_unstable();
            let members = &self.members;
            // A member removed and put back in the same batch stays.
            self.all_members.retain(|user_id| {
                gone.binary_search(user_id).is_err() || members.contains_key(user_id)
            });
        }
        self.version = version;
        self.full_listing = OnceLock::new();
        self.subtree_members
            .0
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
        self.filters
            .replace(old.as_ref().map(|node| &node.group), &group);
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

    pub(super) fn assign_depths_below(&mut self, id: GroupId, depth: u32) {
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
            listing.insert(id, &key, |other| groups[&other].listing_key());
        }
    }

    /// Uses the group's current row and depth as its key: call before changing either.
    fn remove_from_listing(&mut self, id: GroupId) {
        let key = self.listing_key(id);
        let groups = &self.groups;
        if let Some(listing) = self.listing.get_mut() {
            listing.remove(&key, |other| groups[&other].listing_key());
        }
    }

    /// Takes `user_id` out of `group`'s member listing, dropping the listing once empty.
    fn leave_group(&mut self, group: &GroupId, user_id: UserId) {
        if let Some(list) = self.group_members.get_mut(group) {
            remove_sorted(list, &user_id);
            if list.is_empty() {
                self.group_members.remove(group);
            }
        }
    }

    fn put_member(&mut self, user_id: UserId, placement: Placement) {
        let old = self.members.get(&user_id).cloned();
        match &old {
            Some(old) => {
                let kept = |g: &GroupId| placement.groups.binary_search(g).is_ok();
                for group in old.groups.iter().filter(|g| !kept(g)) {
                    self.leave_group(group, user_id);
                }
                if old.role.uses_admin_seat() {
                    self.admins -= 1;
                }
            }
            None => insert_sorted(&mut self.all_members, user_id),
        }
        for group in &placement.groups {
            let already = old
                .as_ref()
                .is_some_and(|o| o.groups.binary_search(group).is_ok());
            if !already {
                insert_sorted(self.group_members.entry(*group).or_default(), user_id);
            }
        }
        if placement.role.uses_admin_seat() {
            self.admins += 1;
        }
        self.members.insert(user_id, placement);
    }

    /// Gives a member `role` and adds it to `group` or takes it out, touching that group's
    /// listing only; a user not yet a member joins in that group (or in none).
    fn step_member(&mut self, user_id: UserId, role: Role, group: GroupId, step: GroupStep) {
        let Some(placement) = self.members.get_mut(&user_id) else {
            let groups = match step {
                GroupStep::Join => vec![group],
                GroupStep::Leave => Vec::new(),
            };
            let groups = groups.into();
            self.put_member(user_id, Placement { role, groups });
            return;
        };
        if placement.role.uses_admin_seat() {
            self.admins -= 1;
        }
        if role.uses_admin_seat() {
            self.admins += 1;
        }
        placement.role = role;
        let Some(groups) = step.applied_to(&placement.groups, group) else {
            return;
        };
        placement.groups = groups.into();
        match step {
            GroupStep::Join => {
                insert_sorted(self.group_members.entry(group).or_default(), user_id);
            }
            GroupStep::Leave => self.leave_group(&group, user_id),
        }
    }

    /// Takes a member out of everything but the list of all members (see [`Directory::apply`]);
    /// answers whether it was one.
    fn remove_member(&mut self, user_id: UserId) -> bool {
        let Some(old) = self.members.remove(&user_id) else {
            return false;
        };
        for group in &old.groups {
            self.leave_group(group, user_id);
        }
        if old.role.uses_admin_seat() {
            self.admins -= 1;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::directory::{DirectoryBuilder, Kept, MemberRow, new_group};
    use crate::domain::values::{Avatar, GroupName, Nickname, RemoteId, Source};

    fn put(user: i64) -> Change {
        put_as(user, Role::Member, Some(Vec::new()))
    }

    fn put_as(user: i64, role: Role, groups: Option<Vec<GroupRef>>) -> Change {
        Change::PutMember {
            member: MemberRow {
                user_id: UserId::new(user),
                role,
                nickname: Nickname::default(),
                avatar: Avatar::default(),
                source: Source::Api,
            },
            groups,
            kept: Kept::NONE,
        }
    }

    /// Members taken out of the list of all members once per batch: one removed and put back
    /// in the same batch stays listed, one put and removed does not.
    #[test]
    fn a_batch_of_removals_leaves_the_member_listing_equal_to_the_members() {
        let mut builder = DirectoryBuilder::new("Team".into(), 10, 0, 0, 1);
        for user in 1..=5 {
            let placement = Placement {
                role: Role::Member,
                groups: Box::new([]),
            };
            builder.add_member(UserId::new(user), placement);
        }
        let mut directory = builder.finish();
        let remove = |user| Change::RemoveMember(UserId::new(user));
        let batch = [
            remove(4),
            remove(2),
            remove(3),
            put(3),
            put(6),
            remove(6),
            remove(9),
        ];
        directory.apply(&batch, &[], 1);
        let mut members: Vec<i64> = directory.placements().map(|(u, _)| u.get()).collect();
        members.sort_unstable();
        assert_eq!(members, vec![1, 3, 5]);
        assert_eq!(directory.member_count(), 3);
        assert_eq!(directory.violations(10), Vec::<String>::new());
    }

    /// A member put with its groups kept stays in them; a user new to the directory joins at
    /// the root.
    #[test]
    fn a_member_put_with_its_groups_kept_stays_in_them() {
        let sales = GroupId::new(10);
        let mut builder = DirectoryBuilder::new("Team".into(), 10, 0, 1, 1);
        let name = GroupName::parse("Sales").expect("a name");
        let mut group = new_group(name, RemoteId::default(), 0, Source::Api, 0);
        group.id = sales;
        builder.add_group(group);
        let groups = Box::new([sales]);
        builder.add_member(
            UserId::new(1),
            Placement {
                role: Role::Member,
                groups,
            },
        );
        let mut directory = builder.finish();
        let batch = [
            put_as(1, Role::SurveyAdmin, None),
            put_as(2, Role::Member, None),
        ];
        directory.apply(&batch, &[], 1);
        let placed = |user| directory.placement(UserId::new(user)).cloned();
        let kept = Placement {
            role: Role::SurveyAdmin,
            groups: Box::new([sales]),
        };
        assert_eq!(placed(1), Some(kept));
        let root = Placement {
            role: Role::Member,
            groups: Box::new([]),
        };
        assert_eq!(placed(2), Some(root));
        assert_eq!(directory.group_members[&sales], [UserId::new(1)]);
        assert_eq!(directory.violations(10), Vec::<String>::new());
    }
}
