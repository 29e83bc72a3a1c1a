//! Directory sync: the rules that turn a snapshot into one batch of changes, or into a list of
//! problems and no change at all.
//!
//! A snapshot names groups by `remote_id` and members by the calling app's `openid`. The planner
//! works on the final tree as a whole (existing groups keep their place unless the snapshot moves
//! them), so a cycle or a depth overflow is found wherever it arises, also through groups the
//! snapshot does not mention. It is pure: the service hands it the current directory, the users
//! behind the openids and the members' stored details.

use std::collections::{HashMap, HashSet};

use super::directory::{Change, Directory, Group, GroupRef, MemberRow};
use super::values::{
    Avatar, GroupId, GroupName, Nickname, Openid, ROOT_GROUP, RemoteId, Role, Source, UserId,
};

/// At most this many problems are reported.
pub const MAX_PROBLEMS: usize = 100;

/// Most groups one member of a snapshot may name (as many as a member update may give).
pub const MAX_MEMBER_GROUPS: usize = 1000;

/// One group of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotGroup {
    pub remote_id: String,
    pub name: String,
    /// `""` for the top level.
    pub parent_remote_id: String,
    pub order: i64,
}

/// One member of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotMember {
    pub openid: String,
    pub nickname: String,
    pub avatar: String,
    /// As given (checked by the planner); [`Role::Member`] when the snapshot says nothing.
    pub role: i64,
    /// `[]` = at the root only.
    pub group_remote_ids: Vec<String>,
}

/// The whole snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub groups: Vec<SnapshotGroup>,
    pub members: Vec<SnapshotMember>,
}

/// `upsert` changes what the snapshot holds and leaves the rest; `replace` also deletes the
/// synced groups and removes the synced members that the snapshot no longer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    #[default]
    Upsert,
    Replace,
}

impl SyncMode {
    /// `upsert` or `replace`, as a snapshot or a query names the mode.
    pub fn parse(raw: &str) -> Option<SyncMode> {
        match raw {
            "upsert" => Some(SyncMode::Upsert),
            "replace" => Some(SyncMode::Replace),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncOptions {
    pub mode: SyncMode,
    /// Lift the safety brake on mass deletion.
    pub allow_mass_delete: bool,
}

/// What a member looks like in the database beyond its placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    pub nickname: Nickname,
    pub avatar: Avatar,
    pub source: Source,
}

/// Why a snapshot cannot be applied: the offending remote id or openid, and the reason in the
/// style of `error.type`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub remote_id: Option<String>,
    pub openid: Option<String>,
    #[serde(rename = "type")]
    pub error_type: &'static str,
    pub message: String,
}

/// What a sync did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SyncReport {
    pub groups_created: u64,
    pub groups_renamed: u64,
    pub groups_moved: u64,
    pub groups_reordered: u64,
    pub groups_deleted: u64,
    pub groups_unchanged: u64,
    pub members_added: u64,
    pub members_changed: u64,
    pub members_removed: u64,
    pub members_unchanged: u64,
}

/// Why nothing was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRefusal {
    /// The snapshot itself is wrong.
    Problems(Vec<Problem>),
    /// `replace` would delete more than the brake allows; `deleting` says how much.
    TooManyDeletes { groups: u64, members: u64 },
}

/// A group of the final tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    Root,
    Existing(GroupId),
    /// The n-th group of the snapshot that does not exist yet.
    New(usize),
}

struct Problems(Vec<Problem>);

impl Problems {
    fn group(&mut self, remote_id: &str, error_type: &'static str, message: impl Into<String>) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(Problem {
                remote_id: Some(remote_id.to_owned()),
                openid: None,
                error_type,
                message: message.into(),
            });
        }
    }

    fn member(&mut self, openid: &str, error_type: &'static str, message: impl Into<String>) {
        if self.0.len() < MAX_PROBLEMS {
            self.0.push(Problem {
                remote_id: None,
                openid: Some(openid.to_owned()),
                error_type,
                message: message.into(),
            });
        }
    }
}

/// Does a replace deleting `deleting` of `synced` rows need `allow_mass_delete`?
/// The brake holds when a sync would delete more than 50 rows and more than 20% of them.
pub fn brake_holds(deleting: u64, synced: u64) -> bool {
    deleting > 50 && deleting * 5 > synced
}

/// The changes that make `directory` equal to `snapshot`, with the report. `users` gives the
/// user id of every snapshot openid; `members` the stored details of the current members.
pub fn plan(
    directory: &Directory,
    snapshot: &Snapshot,
    options: SyncOptions,
    users: &HashMap<String, UserId>,
    members: &HashMap<UserId, MemberState>,
    max_depth: u32,
    now: i64,
) -> Result<(Vec<Change>, SyncReport), SyncRefusal> {
    let mut problems = Problems(Vec::new());
    let mut report = SyncReport::default();

    // ----- groups: identity -----
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(snapshot.groups.len());
    // The parsed remote id and name of each group (`None` where a problem was found).
    let mut remotes: Vec<Option<RemoteId>> = Vec::with_capacity(snapshot.groups.len());
    let mut names: Vec<Option<GroupName>> = Vec::with_capacity(snapshot.groups.len());
    for (i, group) in snapshot.groups.iter().enumerate() {
        let remote = group.remote_id.as_str();
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
        match GroupName::parse(&group.name) {
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
        .groups
        .iter()
        .map(|g| directory.group_by_remote_id(&g.remote_id))
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
    let mut parents: Vec<Key> = Vec::with_capacity(snapshot.groups.len());
    for group in &snapshot.groups {
        let parent = if group.parent_remote_id.is_empty() {
            Key::Root
        } else if let Some(i) = index.get(group.parent_remote_id.as_str()) {
            key_of_snapshot(*i)
        } else {
            match directory.group_by_remote_id(&group.parent_remote_id) {
                Some(parent) if !deleted.contains(&parent.id) => Key::Existing(parent.id),
                _ => {
                    problems.group(
                        &group.remote_id,
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
        .chain((0..snapshot.groups.len()).map(key_of_snapshot))
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
    for (i, group) in snapshot.groups.iter().enumerate() {
        let key = key_of_snapshot(i);
        if in_cycle.contains(&key) {
            problems.group(
                &group.remote_id,
                "group_cycle",
                "the group would be its own ancestor",
            );
        } else if depth.get(&key).is_some_and(|d| *d > max_depth) {
            problems.group(
                &group.remote_id,
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
    let mut seen_openids: HashSet<&str> = HashSet::with_capacity(snapshot.members.len());
    let mut wanted: Vec<(UserId, Role, Vec<Key>, &SnapshotMember)> =
        Vec::with_capacity(snapshot.members.len());
    // The parsed nickname and avatar of each wanted member (`None` where a problem was found).
    let mut profiles: Vec<Option<(Nickname, Avatar)>> = Vec::with_capacity(snapshot.members.len());
    for member in &snapshot.members {
        let openid = member.openid.as_str();
        if let Err(error) = Openid::parse(openid) {
            problems.member(openid, "invalid_argument", error.to_string());
            continue;
        }
        if !seen_openids.insert(openid) {
            problems.member(openid, "duplicated_openid", "the openid appears twice");
            continue;
        }
        let nickname = Nickname::parse(&member.nickname);
        let avatar = Avatar::parse(&member.avatar);
        for error in [nickname.as_ref().err(), avatar.as_ref().err()]
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
        let mut keys = Vec::with_capacity(member.group_remote_ids.len());
        for remote in &member.group_remote_ids {
            match group_key(remote) {
                Some(key) => keys.push(key),
                None => problems.member(
                    openid,
                    "contacts_group_not_found",
                    format!("no group has remote_id {remote:?}"),
                ),
            }
        }
        let Some(user_id) = users.get(openid) else {
            problems.member(openid, "user_not_found", "the openid has no user");
            continue;
        };
        wanted.push((*user_id, role, keys, member));
        profiles.push(nickname.ok().zip(avatar.ok()));
    }
    let in_snapshot: HashSet<UserId> = wanted.iter().map(|(user, ..)| *user).collect();
    let removed: Vec<UserId> = match options.mode {
        SyncMode::Upsert => Vec::new(),
        SyncMode::Replace => directory
            .placements()
            .filter(|(user, placement)| {
                placement.role != Role::Owner
                    && !in_snapshot.contains(user)
                    && members.get(user).is_some_and(|m| m.source == Source::Sync)
            })
            .map(|(user, _)| user)
            .collect(),
    };
    // Seats: the admins after the sync.
    let removed_set: HashSet<UserId> = removed.iter().copied().collect();
    let mut admins = directory
        .placements()
        .filter(|(user, p)| {
            p.role.uses_admin_seat() && !in_snapshot.contains(user) && !removed_set.contains(user)
        })
        .count() as i64;
    for (user, role, _, member) in &wanted {
        let current = directory.placement(*user).map(|p| p.role);
        if current != Some(Role::Owner) && role.uses_admin_seat() {
            admins += 1;
            if admins > directory.admin_seats() {
                problems.member(&member.openid, "exceed_user_limit", "no admin seat is left");
            }
        }
    }
    // Without a problem, every value parsed.
    let remotes: Option<Vec<RemoteId>> = remotes.into_iter().collect();
    let names: Option<Vec<GroupName>> = names.into_iter().collect();
    let profiles: Option<Vec<(Nickname, Avatar)>> = profiles.into_iter().collect();
    let (true, Some(remotes), Some(names), Some(profiles)) =
        (problems.0.is_empty(), remotes, names, profiles)
    else {
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
    let mut changes = Vec::new();
    let mut new_order: Vec<usize> = (0..snapshot.groups.len())
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
        let group = &snapshot.groups[i];
        let parent = reference(parents[i], &created_index);
        created_index.insert(i, created_index.len());
        changes.push(Change::CreateGroup {
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
    for (i, group) in snapshot.groups.iter().enumerate() {
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
        changes.push(Change::UpdateGroup { group: row, parent });
    }
    let mut deleted_sorted: Vec<GroupId> = deleted.iter().copied().collect();
    deleted_sorted.sort_unstable();
    for id in &deleted_sorted {
        if let Ok(view) = directory.group(*id) {
            let mut row = view.group;
            row.is_valid = false;
            row.upd_at = now;
            let parent = GroupRef::Existing(row.parent_id);
            changes.push(Change::UpdateGroup { group: row, parent });
            report.groups_deleted += 1;
        }
    }

    for ((user_id, role, keys, _), (nickname, avatar)) in wanted.iter().zip(&profiles) {
        let current = directory.placement(*user_id);
        let role = match current {
            Some(p) if p.role == Role::Owner => Role::Owner,
            _ => *role,
        };
        let mut refs: Vec<GroupRef> = keys.iter().map(|k| reference(*k, &created_index)).collect();
        refs.sort_unstable_by_key(|r| match r {
            GroupRef::Existing(id) => (0, id.get() as usize),
            GroupRef::New(n) => (1, *n),
        });
        refs.dedup();
        let stored = members.get(user_id);
        let same = current.is_some_and(|p| {
            p.role == role
                && refs.len() == p.groups.len()
                && refs
                    .iter()
                    .zip(&p.groups)
                    .all(|(r, g)| *r == GroupRef::Existing(*g))
        }) && stored.is_some_and(|m| m.nickname == *nickname && m.avatar == *avatar);
        if same {
            report.members_unchanged += 1;
            continue;
        }
        if current.is_some() {
            report.members_changed += 1;
        } else {
            report.members_added += 1;
        }
        changes.push(Change::PutMember {
            member: MemberRow {
                user_id: *user_id,
                role,
                nickname: nickname.clone(),
                avatar: avatar.clone(),
                source: Source::Sync,
            },
            groups: refs,
        });
    }
    for user_id in &removed {
        changes.push(Change::RemoveMember(*user_id));
        report.members_removed += 1;
    }
    // Members the snapshot does not manage leave the groups it deletes.
    if !deleted.is_empty() {
        for (user_id, placement) in directory.placements() {
            if in_snapshot.contains(&user_id) || removed_set.contains(&user_id) {
                continue;
            }
            if placement.groups.iter().any(|g| deleted.contains(g)) {
                let state = members.get(&user_id);
                changes.push(Change::PutMember {
                    member: MemberRow {
                        user_id,
                        role: placement.role,
                        nickname: state.map(|s| s.nickname.clone()).unwrap_or_default(),
                        avatar: state.map(|s| s.avatar.clone()).unwrap_or_default(),
                        source: state.map_or(Source::Api, |s| s.source),
                    },
                    groups: placement
                        .groups
                        .iter()
                        .filter(|g| !deleted.contains(g))
                        .map(|g| GroupRef::Existing(*g))
                        .collect(),
                });
                report.members_changed += 1;
            }
        }
    }
    Ok((changes, report))
}
