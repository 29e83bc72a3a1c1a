//! The planner: a snapshot against the current directory, answered as a [`SyncPlan`] or as the
//! problems that stop it. It works on the final tree as a whole (existing groups keep their
//! place unless the snapshot moves them), so a cycle or a depth overflow is found wherever it
//! arises, also through groups the snapshot does not mention.

use std::collections::{HashMap, HashSet};

use super::plan::{MemberChange, SyncPlan};
use super::{
    MemberState, Problems, Snapshot, SyncMode, SyncOptions, SyncRefusal, SyncReport, brake_holds,
};
use crate::domain::directory::{Change, Directory, Group, GroupRef, Kept, MemberRow};
use crate::domain::values::{
    Avatar, GroupId, GroupName, Nickname, Openid, ROOT_GROUP, RemoteId, Role, Source, UserId,
};

/// A group of the final tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Root,
    Existing(GroupId),
    /// The n-th group of the snapshot that does not exist yet.
    New(usize),
}

/// A member of the snapshot that passed its checks: its groups are `keys[keys_at..][..count]`.
struct Wanted {
    member: u32,
    count: u32,
    user_id: UserId,
    keys_at: usize,
    role: Role,
}

/// Which members repeat an openid given earlier in the snapshot, found by sorting the members'
/// numbers rather than by a set of a million strings.
fn repeated_openids(snapshot: &Snapshot) -> Vec<bool> {
    let count = snapshot.member_count();
    let mut order: Vec<u32> = (0..u32::try_from(count).unwrap_or(u32::MAX)).collect();
    snapshot.sort_by_openid(&mut order);
    let openid = |n: u32| snapshot.openid(n as usize);
    let mut repeated = vec![false; count];
    for pair in order.windows(2) {
        if openid(pair[0]) == openid(pair[1]) {
            repeated[pair[1] as usize] = true;
        }
    }
    repeated
}

/// The changes that make `directory` equal to `snapshot`, with the report. `users[i]` is the
/// user of the snapshot's `i`-th member; `members` the stored details of the current members.
pub fn plan(
    directory: &Directory,
    snapshot: &Snapshot,
    options: SyncOptions,
    users: &[UserId],
    members: &HashMap<UserId, MemberState>,
    max_depth: u32,
    now: i64,
) -> Result<SyncPlan, SyncRefusal> {
    let mut problems = Problems(Vec::new());
    let mut report = SyncReport::default();
    let group_count = snapshot.group_count();

    // ----- groups: identity -----
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(group_count);
    // The parsed remote id and name of each group (`None` where a problem was found).
    let mut remotes: Vec<Option<RemoteId>> = Vec::with_capacity(group_count);
    let mut names: Vec<Option<GroupName>> = Vec::with_capacity(group_count);
    for (i, group) in snapshot.groups().enumerate() {
        let remote = group.remote_id;
        if remote.is_empty() {
            problems.group(
                remote,
                "invalid_argument",
                "a synced group needs a remote_id",
            );
            remotes.push(None);
        } else {
            match RemoteId::parse(remote) {
                Ok(parsed) => {
                    if index.insert(remote, i).is_some() {
                        problems.group(
                            remote,
                            "duplicated_remote_id",
                            "the remote_id appears twice",
                        );
                    }
                    remotes.push(Some(parsed));
                }
                Err(error) => {
                    problems.group(remote, "invalid_argument", error.to_string());
                    remotes.push(None);
                }
            }
        }
        match GroupName::parse(group.name) {
            Ok(name) => names.push(Some(name)),
            Err(error) => {
                problems.group(remote, "invalid_argument", error.to_string());
                names.push(None);
            }
        }
        if i32::try_from(group.order).is_err() {
            problems.group(remote, "invalid_argument", "order must be a 32-bit integer");
        }
    }
    let existing: Vec<Option<&Group>> = snapshot
        .groups()
        .map(|g| directory.group_by_remote_id(g.remote_id))
        .collect();
    let key_of_snapshot = |i: usize| match existing[i] {
        Some(group) => Key::Existing(group.id),
        None => Key::New(i),
    };
    let snapshot_of_existing: HashMap<GroupId, usize> = existing
        .iter()
        .enumerate()
        .filter_map(|(i, group)| group.map(|g| (g.id, i)))
        .collect();

    // ----- groups: deletions (replace) -----
    let deleted: HashSet<GroupId> = match options.mode {
        SyncMode::Upsert => HashSet::new(),
        SyncMode::Replace => directory
            .all_groups()
            .filter(|g| {
                g.is_valid && g.source == Source::Sync && !index.contains_key(g.remote_id.as_str())
            })
            .map(|g| g.id)
            .collect(),
    };

    // ----- groups: parents of the final tree -----
    let mut parents: Vec<Key> = Vec::with_capacity(group_count);
    for group in snapshot.groups() {
        let parent = if group.parent_remote_id.is_empty() {
            Key::Root
        } else if let Some(i) = index.get(group.parent_remote_id) {
            key_of_snapshot(*i)
        } else {
            match directory.group_by_remote_id(group.parent_remote_id) {
                Some(parent) if !deleted.contains(&parent.id) => Key::Existing(parent.id),
                _ => {
                    problems.group(
                        group.remote_id,
                        "parent_group_not_found",
                        format!("no group has remote_id {:?}", group.parent_remote_id),
                    );
                    Key::Root
                }
            }
        };
        parents.push(parent);
    }
    let final_parent = |key: Key| -> Option<Key> {
        match key {
            Key::Root => None,
            Key::New(i) => Some(parents[i]),
            Key::Existing(id) => match snapshot_of_existing.get(&id) {
                Some(i) => Some(parents[*i]),
                None => directory.group(id).ok().map(|view| {
                    if view.group.parent_id == ROOT_GROUP {
                        Key::Root
                    } else {
                        Key::Existing(view.group.parent_id)
                    }
                }),
            },
        }
    };

    // ----- groups: cycles and depth over the whole final tree -----
    let mut depth: HashMap<Key, u32> = HashMap::new();
    depth.insert(Key::Root, 0);
    let survivors: Vec<Key> = directory
        .all_groups()
        .filter(|g| g.is_valid && !deleted.contains(&g.id))
        .map(|g| Key::Existing(g.id))
        .chain((0..group_count).map(key_of_snapshot))
        .collect();
    let limit = survivors.len() + 1;
    let mut in_cycle: HashSet<Key> = HashSet::new();
    for start in &survivors {
        if depth.contains_key(start) || in_cycle.contains(start) {
            continue;
        }
        let mut path = vec![*start];
        let mut current = *start;
        let base = loop {
            match final_parent(current) {
                None => break Some(0),
                Some(parent) => {
                    if let Some(d) = depth.get(&parent) {
                        break Some(*d);
                    }
                    if in_cycle.contains(&parent) || path.contains(&parent) || path.len() > limit {
                        break None;
                    }
                    path.push(parent);
                    current = parent;
                }
            }
        };
        match base {
            Some(mut d) => {
                for key in path.iter().rev() {
                    d += 1;
                    depth.insert(*key, d);
                }
            }
            None => in_cycle.extend(path),
        }
    }
    for (i, group) in snapshot.groups().enumerate() {
        let key = key_of_snapshot(i);
        if in_cycle.contains(&key) {
            problems.group(
                group.remote_id,
                "group_cycle",
                "the group would be its own ancestor",
            );
        } else if depth.get(&key).is_some_and(|d| *d > max_depth) {
            problems.group(
                group.remote_id,
                "group_too_deep",
                format!("the group would be deeper than {max_depth}"),
            );
        }
    }
    for key in &survivors {
        if let Key::Existing(id) = key
            && !snapshot_of_existing.contains_key(id)
            && depth.get(key).is_some_and(|d| *d > max_depth)
        {
            let remote = directory
                .group(*id)
                .map(|v| v.group.remote_id)
                .unwrap_or_default();
            problems.group(
                &remote,
                "group_too_deep",
                format!("group {id} would be too deep"),
            );
        }
    }
    // A deleted group may not keep children that stay.
    for key in &survivors {
        if let Some(Key::Existing(parent)) = final_parent(*key)
            && deleted.contains(&parent)
        {
            let remote = directory
                .group(parent)
                .map(|v| v.group.remote_id)
                .unwrap_or_default();
            problems.group(
                &remote,
                "group_not_empty",
                "the group would keep child groups the snapshot does not delete",
            );
        }
    }
    drop(survivors);

    // ----- members -----
    let group_key = |remote: &str| -> Option<Key> {
        match index.get(remote) {
            Some(i) => Some(key_of_snapshot(*i)),
            None => directory
                .group_by_remote_id(remote)
                .filter(|g| !deleted.contains(&g.id))
                .map(|g| Key::Existing(g.id)),
        }
    };
    let repeated = repeated_openids(snapshot);
    let mut wanted: Vec<Wanted> = Vec::with_capacity(snapshot.member_count());
    let mut keys: Vec<Key> = Vec::with_capacity(snapshot.member_count());
    for (i, member) in snapshot.members().enumerate() {
        let openid = member.openid;
        if let Err(error) = Openid::parse(openid) {
            problems.member(openid, "invalid_argument", error.to_string());
            continue;
        }
        if repeated[i] {
            problems.member(openid, "duplicated_openid", "the openid appears twice");
            continue;
        }
        for error in [
            Nickname::parse(member.nickname).err(),
            Avatar::parse(member.avatar).err(),
        ]
        .into_iter()
        .flatten()
        {
            problems.member(openid, "invalid_argument", error.to_string());
        }
        let role = match Role::assignable(member.role) {
            Ok(role) => role,
            Err(error) => {
                problems.member(openid, "invalid_argument", error.to_string());
                Role::Member
            }
        };
        let keys_at = keys.len();
        for remote in member.group_remote_ids() {
            match group_key(remote) {
                Some(key) => keys.push(key),
                None => problems.member(
                    openid,
                    "contacts_group_not_found",
                    format!("no group has remote_id {remote:?}"),
                ),
            }
        }
        let Some(user_id) = users.get(i) else {
            problems.member(openid, "user_not_found", "the openid has no user");
            continue;
        };
        wanted.push(Wanted {
            member: u32::try_from(i).unwrap_or(u32::MAX),
            count: u32::try_from(keys.len() - keys_at).unwrap_or(u32::MAX),
            user_id: *user_id,
            keys_at,
            role,
        });
    }
    drop(repeated);
    // Ascending, for lookups.
    let mut in_snapshot: Vec<UserId> = wanted.iter().map(|w| w.user_id).collect();
    in_snapshot.sort_unstable();
    let holds = |list: &[UserId], user: &UserId| list.binary_search(user).is_ok();
    let mut removed: Vec<UserId> = match options.mode {
        SyncMode::Upsert => Vec::new(),
        SyncMode::Replace => directory
            .placements()
            .filter(|(user, placement)| {
                placement.role != Role::Owner
                    && !holds(&in_snapshot, user)
                    && members.get(user).is_some_and(|m| m.source == Source::Sync)
            })
            .map(|(user, _)| user)
            .collect(),
    };
    removed.sort_unstable();
    // Seats: the admins after the sync.
    let mut admins = directory
        .placements()
        .filter(|(user, p)| {
            p.role.uses_admin_seat() && !holds(&in_snapshot, user) && !holds(&removed, user)
        })
        .count() as i64;
    for wanted in &wanted {
        let current = directory.placement(wanted.user_id).map(|p| p.role);
        if current != Some(Role::Owner) && wanted.role.uses_admin_seat() {
            admins += 1;
            if admins > directory.admin_seats() {
                let openid = snapshot.member(wanted.member as usize).openid;
                problems.member(openid, "exceed_user_limit", "no admin seat is left");
            }
        }
    }
    // Without a problem, every value parsed.
    let remotes: Option<Vec<RemoteId>> = remotes.into_iter().collect();
    let names: Option<Vec<GroupName>> = names.into_iter().collect();
    let (true, Some(remotes), Some(names)) = (problems.0.is_empty(), remotes, names) else {
        return Err(SyncRefusal::Problems(problems.0));
    };

    // ----- the brake -----
    if options.mode == SyncMode::Replace && !options.allow_mass_delete {
        let synced_groups = directory
            .all_groups()
            .filter(|g| g.is_valid && g.source == Source::Sync)
            .count() as u64;
        let synced_members = members
            .values()
            .filter(|m| m.source == Source::Sync)
            .count() as u64;
        let (groups, members) = (deleted.len() as u64, removed.len() as u64);
        if brake_holds(groups, synced_groups) || brake_holds(members, synced_members) {
            return Err(SyncRefusal::TooManyDeletes { groups, members });
        }
    }

    // ----- changes: new groups parents first, then updates, deletes, members -----
    let mut group_changes = Vec::new();
    let mut new_order: Vec<usize> = (0..group_count)
        .filter(|i| existing[*i].is_none())
        .collect();
    new_order.sort_by_key(|i| depth.get(&Key::New(*i)).copied().unwrap_or(0));
    let mut created_index: HashMap<usize, usize> = HashMap::with_capacity(new_order.len());
    let reference = |key: Key, created_index: &HashMap<usize, usize>| match key {
        Key::Root => GroupRef::Existing(ROOT_GROUP),
        Key::Existing(id) => GroupRef::Existing(id),
        Key::New(i) => GroupRef::New(created_index[&i]),
    };
    for i in new_order {
        let group = snapshot.group(i);
        let parent = reference(parents[i], &created_index);
        created_index.insert(i, created_index.len());
        group_changes.push(Change::CreateGroup {
            parent,
            group: Group {
                id: GroupId::default(),
                parent_id: ROOT_GROUP,
                source: Source::Sync,
                remote_id: remotes[i].clone(),
                name: names[i].clone(),
                order: group.order,
                is_valid: true,
                created_at: now,
                upd_at: now,
            },
        });
        report.groups_created += 1;
    }
    for (i, group) in snapshot.groups().enumerate() {
        let Some(current) = existing[i] else {
            continue;
        };
        let parent = reference(parents[i], &created_index);
        let renamed = current.name != names[i];
        let moved = parent != GroupRef::Existing(current.parent_id);
        let reordered = current.order != group.order;
        if !(renamed || moved || reordered) {
            report.groups_unchanged += 1;
            continue;
        }
        report.groups_renamed += u64::from(renamed);
        report.groups_moved += u64::from(moved);
        report.groups_reordered += u64::from(reordered);
        let mut row = current.clone();
        row.name = names[i].clone();
        row.order = group.order;
        row.source = Source::Sync;
        row.upd_at = now;
        group_changes.push(Change::UpdateGroup { group: row, parent });
    }
    let mut deleted_sorted: Vec<GroupId> = deleted.iter().copied().collect();
    deleted_sorted.sort_unstable();
    for id in &deleted_sorted {
        if let Ok(view) = directory.group(*id) {
            let mut row = view.group;
            row.is_valid = false;
            row.upd_at = now;
            let parent = GroupRef::Existing(row.parent_id);
            group_changes.push(Change::UpdateGroup { group: row, parent });
            report.groups_deleted += 1;
        }
    }

    let mut member_changes: Vec<MemberChange> = Vec::new();
    let mut refs: Vec<GroupRef> = Vec::new();
    for wanted in &wanted {
        let member = snapshot.member(wanted.member as usize);
        let current = directory.placement(wanted.user_id);
        let role = match current {
            Some(p) if p.role == Role::Owner => Role::Owner,
            _ => wanted.role,
        };
        let refs_at = refs.len();
        let own = &keys[wanted.keys_at..wanted.keys_at + wanted.count as usize];
        refs.extend(own.iter().map(|k| reference(*k, &created_index)));
        let mine = &mut refs[refs_at..];
        mine.sort_unstable_by_key(|r| match r {
            GroupRef::Existing(id) => (0, id.get() as usize),
            GroupRef::New(n) => (1, *n),
        });
        let kept = dedup_sorted(mine);
        refs.truncate(refs_at + kept);
        let mine = &refs[refs_at..];
        let stored = members.get(&wanted.user_id);
        let keeps_groups = current.is_some_and(|p| {
            mine.len() == p.groups.len()
                && mine
                    .iter()
                    .zip(&p.groups)
                    .all(|(r, g)| *r == GroupRef::Existing(*g))
        });
        let same = keeps_groups
            && current.is_some_and(|p| p.role == role)
            && stored.is_some_and(|m| m.nickname == member.nickname && m.avatar == member.avatar);
        if keeps_groups {
            // Its memberships are not written again: nothing to refer to.
            refs.truncate(refs_at);
        }
        if same {
            report.members_unchanged += 1;
            continue;
        }
        if current.is_some() {
            report.members_changed += 1;
        } else {
            report.members_added += 1;
        }
        member_changes.push(MemberChange {
            member: wanted.member,
            role,
            refs_at: u32::try_from(refs_at).unwrap_or(u32::MAX),
            count: u32::try_from(refs.len() - refs_at).unwrap_or(u32::MAX),
            keeps_groups,
        });
    }
    drop(keys);
    report.members_removed += removed.len() as u64;
    // Members the snapshot does not manage leave the groups it deletes.
    let mut adjusted = Vec::new();
    if !deleted.is_empty() {
        for (user_id, placement) in directory.placements() {
            if holds(&in_snapshot, &user_id) || holds(&removed, &user_id) {
                continue;
            }
            if placement.groups.iter().any(|g| deleted.contains(g)) {
                let state = members.get(&user_id);
                adjusted.push(Change::PutMember {
                    member: MemberRow {
                        user_id,
                        role: placement.role,
                        nickname: state.map(|s| s.nickname.clone()).unwrap_or_default(),
                        avatar: state.map(|s| s.avatar.clone()).unwrap_or_default(),
                        source: state.map_or(Source::Api, |s| s.source),
                    },
                    groups: Some(
                        placement
                            .groups
                            .iter()
                            .filter(|g| !deleted.contains(g))
                            .map(|g| GroupRef::Existing(*g))
                            .collect(),
                    ),
                    kept: Kept::NONE,
                });
                report.members_changed += 1;
            }
        }
    }
    Ok(SyncPlan::new(
        report,
        group_changes,
        (member_changes, refs),
        removed,
        adjusted,
    ))
}

/// Remove repeats from a sorted slice by moving the distinct values to its front; answers how
/// many there are.
fn dedup_sorted<T: PartialEq + Copy>(list: &mut [T]) -> usize {
    let mut kept = 0;
    for i in 0..list.len() {
        if kept == 0 || list[i] != list[kept - 1] {
            list[kept] = list[i];
            kept += 1;
        }
    }
    kept
}
