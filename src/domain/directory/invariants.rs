//! The directory's invariants checked from scratch (`admin check` reports them): a valid
//! tree within the depth limit, unique remote ids, member lists and seat count equal to the
//! placements, and cached listing orders and filter indexes equal to fresh ones.

use std::collections::HashMap;

use super::Directory;
use super::filters::FilterIndexes;
use crate::domain::values::{GroupId, ROOT_GROUP};

impl Directory {
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
        let listed_once = self.all_members.windows(2).all(|pair| pair[0] < pair[1]);
        if self.all_members.len() != self.members.len()
            || !listed_once
            || !self
                .all_members
                .iter()
                .all(|u| self.members.contains_key(u))
        {
            problems.push("the member listing and the member set differ".to_owned());
        }
        if let Some(listing) = self.listing.get() {
            let mut fresh: Vec<GroupId> = self.children.values().flatten().copied().collect();
            fresh.sort_unstable_by_key(|id| self.listing_key(*id));
            if listing.iter().collect::<Vec<_>>() != fresh || listing.len() != fresh.len() {
                problems.push("the cached listing order is stale".to_owned());
            }
        }
        if let Some(listing) = self.full_listing.get() {
            let mut fresh: Vec<GroupId> = self.groups.keys().copied().collect();
            fresh.sort_unstable_by_key(|id| self.listing_key(*id));
            if *listing != fresh {
                problems.push("the cached listing order with tombstones is stale".to_owned());
            }
        }
        let mut fresh = FilterIndexes::default();
        for node in self.groups.values() {
            fresh.push(&node.group);
        }
        fresh.sort();
        if fresh != self.filters {
            problems.push("the indexes of the listing filters are stale".to_owned());
        }
        problems
    }
}
