//! SCIM Groups: the directory's groups. `displayName` is the name, `externalId` the remote id,
//! `members` the SCIM users placed in the group and the groups directly under it, and the
//! extension's `parent` the group it sits under (absent: the top level, where the groups of a
//! provider without a tree land).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::render::{self, Location};
use super::{REWRITE_ATTEMPTS, ScimResult, Target, Versioned, check_version, patched};
use crate::domain::RuleError;
use crate::domain::directory::{Change, Directory, Group, GroupRef, MemberRow, new_group};
use crate::domain::scim::filter::{Filter, equality, matches};
use crate::domain::scim::patch::Operation;
use crate::domain::scim::schema::{self, GROUP_EXTENSION_SCHEMA};
use crate::domain::scim::{ScimError, attribute};
use crate::domain::values::{
    self, Avatar, GroupId, GroupName, Nickname, ROOT_GROUP, RemoteId, Role, Source, UserId,
};
use crate::service::directories::Origin;
use crate::service::{Service, ServiceError, unix_now};
use crate::store::TeamRecord;

/// The SCIM ids of the users one request involves, both ways: looked up as they are needed,
/// never the whole directory's.
#[derive(Default)]
struct ScimIds {
    by_scim_id: HashMap<String, UserId>,
    by_user: HashMap<UserId, String>,
    /// Users looked up, SCIM users or not.
    checked: HashSet<UserId>,
    /// Names and avatars of the members looked up by SCIM id (the users a request names), as
    /// their rows are rewritten unchanged but for groups.
    profiles: HashMap<UserId, (Nickname, Avatar)>,
}

impl ScimIds {
    /// Whether every one of `users` has been looked up.
    fn knows(&self, users: &[UserId]) -> bool {
        users.iter().all(|u| self.checked.contains(u))
    }
}

/// The `value`s of the members of a normalized group that may name users (not typed `Group`).
fn member_values(stored: &Map<String, Value>) -> Vec<&str> {
    stored
        .get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .filter(|member| {
            !attribute(member, "type")
                .and_then(Value::as_str)
                .is_some_and(|kind| kind.eq_ignore_ascii_case("group"))
        })
        .filter_map(|member| attribute(member, "value").and_then(Value::as_str))
        .collect()
}

/// The `value`s of the members PATCH `operations` name (`[{"value": …}]`, or
/// `{"members": [{"value": …}]}`), looked up with the group's current members.
fn named_in(operations: &[Operation]) -> Vec<&str> {
    operations
        .iter()
        .filter_map(|operation| match operation.value.as_ref()? {
            Value::Array(items) => Some(items),
            Value::Object(map) => attribute(map, "members").and_then(Value::as_array),
            _ => None,
        })
        .flatten()
        .filter_map(Value::as_object)
        .filter_map(|member| attribute(member, "value").and_then(Value::as_str))
        .collect()
}

/// A group as a SCIM write wants it.
struct Desired {
    name: GroupName,
    remote_id: RemoteId,
    parent: GroupId,
    users: Vec<UserId>,
    groups: Vec<GroupId>,
}

fn group_id(id: &str) -> ScimResult<GroupId> {
    match id.parse::<GroupId>() {
        Ok(id) if id > ROOT_GROUP && id <= values::MAX_GROUP_ID => Ok(id),
        _ => Err(ScimError::not_found(format!("no group with id {id}")).into()),
    }
}

fn desired(stored: &Map<String, Value>, ids: &ScimIds) -> ScimResult<Desired> {
    let text = |key: &str| stored.get(key).and_then(Value::as_str).unwrap_or_default();
    let name = GroupName::parse(text("displayName"))?;
    let remote_id = RemoteId::parse(text("externalId"))?;
    let parent = match stored
        .get(GROUP_EXTENSION_SCHEMA)
        .and_then(|ext| ext.get("parent"))
        .and_then(|parent| parent.get("value"))
        .and_then(Value::as_str)
    {
        None | Some("") | Some("0") => ROOT_GROUP,
        Some(raw) => raw
            .parse::<GroupId>()
            .map_err(|_| ScimError::invalid_value(format!("no group with id {raw}")))?,
    };
    let mut users = Vec::new();
    let mut groups = Vec::new();
    for member in stored
        .get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
    {
        let value = attribute(member, "value")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = attribute(member, "type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let is_group = kind.eq_ignore_ascii_case("group")
            || (!kind.eq_ignore_ascii_case("user") && !ids.by_scim_id.contains_key(value));
        if is_group {
            match value.parse::<GroupId>() {
                Ok(id) if id > ROOT_GROUP => groups.push(id),
                _ => {
                    return Err(ScimError::invalid_value(format!(
                        "no user or group with id {value}"
                    ))
                    .into());
                }
            }
        } else {
            let user = ids
                .by_scim_id
                .get(value)
                .ok_or_else(|| ScimError::invalid_value(format!("no user with id {value}")))?;
            users.push(*user);
        }
    }
    Ok(Desired {
        name,
        remote_id,
        parent,
        users,
        groups,
    })
}

/// The member row of `user_id` with new groups (name and role as they are).
fn put(
    d: &Directory,
    user_id: UserId,
    profiles: &HashMap<UserId, (Nickname, Avatar)>,
    groups: Vec<GroupRef>,
) -> Change {
    let (nickname, avatar) = profiles.get(&user_id).cloned().unwrap_or_default();
    Change::PutMember {
        member: MemberRow {
            user_id,
            role: d.placement(user_id).map_or(Role::Member, |p| p.role),
            nickname,
            avatar,
            source: Source::Sync,
        },
        groups: Some(groups),
    }
}

/// A group as a write read it: its row and its direct members.
struct ReadGroup {
    group: Group,
    members: Vec<UserId>,
}

impl ReadGroup {
    /// `id` as `d` holds it; `None`: no such group.
    fn of(d: &Directory, id: GroupId) -> Option<ReadGroup> {
        Some(ReadGroup {
            group: d.group(id).ok()?.group,
            members: d.direct_members(id).to_vec(),
        })
    }

    /// Whether a write made from this read of `id` still stands on `d`: the group's row is as
    /// read, and so are its members among the SCIM users the write knows (`ids`), which are
    /// those it keeps or removes. A member it does not know, added meanwhile, it leaves alone,
    /// so that members added to one group at once do not make each other start again.
    fn stands(&self, d: &Directory, id: GroupId, ids: &ScimIds) -> bool {
        let known = |members: &[UserId]| {
            let mut known: Vec<UserId> = members
                .iter()
                .copied()
                .filter(|user| ids.by_user.contains_key(user))
                .collect();
            known.sort_unstable();
            known
        };
        d.group(id).is_ok_and(|view| view.group == self.group)
            && known(d.direct_members(id)) == known(&self.members)
    }
}

/// The changes that make group `target` (or a new group) what `want` says.
fn decide(
    d: &Directory,
    target: Option<GroupId>,
    want: &Desired,
    ids: &ScimIds,
    profiles: &HashMap<UserId, (Nickname, Avatar)>,
    max_depth: u32,
) -> Result<Vec<Change>, RuleError> {
    let now = unix_now();
    let mut changes = Vec::new();
    let (this, moved) = match target {
        None => {
            d.check_create(want.parent, &want.remote_id, max_depth)?;
            let group = new_group(
                want.name.clone(),
                want.remote_id.clone(),
                0,
                Source::Sync,
                now,
            );
            let parent = GroupRef::Existing(want.parent);
            changes.push(Change::CreateGroup { parent, group });
            (GroupRef::New(0), false)
        }
        Some(id) => {
            let mut group = d.group(id)?.group;
            let moved = want.parent != group.parent_id;
            d.check_update(
                id,
                None,
                moved.then_some(want.parent),
                Some(&want.remote_id),
                max_depth,
            )?;
            if moved || group.name != want.name || group.remote_id != want.remote_id {
                group.name = want.name.clone();
                group.remote_id = want.remote_id.clone();
                group.source = Source::Sync;
                group.upd_at = now;
                let parent = GroupRef::Existing(want.parent);
                changes.push(Change::UpdateGroup { group, parent });
            }
            (GroupRef::Existing(id), moved)
        }
    };
    let children: Vec<GroupId> = target
        .map(|id| d.children_of(id).to_vec())
        .unwrap_or_default();
    let wanted_groups: HashSet<GroupId> = want.groups.iter().copied().collect();
    for child in &wanted_groups {
        if children.contains(child) {
            continue;
        }
        if moved {
            return Err(RuleError::invalid(
                "change a group's parent and add groups to it in separate requests",
            ));
        }
        match target {
            Some(id) => d.check_update(*child, None, Some(id), None, max_depth)?,
            // Under the new group, one level below its parent.
            None => d.check_update(
                *child,
                None,
                Some(want.parent),
                None,
                max_depth.saturating_sub(1),
            )?,
        }
        let mut group = d.group(*child)?.group;
        group.source = Source::Sync;
        group.upd_at = now;
        changes.push(Change::UpdateGroup {
            group,
            parent: this,
        });
    }
    for child in children.iter().filter(|c| !wanted_groups.contains(c)) {
        let mut group = d.group(*child)?.group;
        group.source = Source::Sync;
        group.upd_at = now;
        changes.push(Change::UpdateGroup {
            group,
            parent: GroupRef::Existing(ROOT_GROUP),
        });
    }
    let current: HashSet<UserId> = target
        .map(|id| {
            d.direct_members(id)
                .iter()
                .copied()
                .filter(|u| ids.by_user.contains_key(u))
                .collect()
        })
        .unwrap_or_default();
    let wanted_users: HashSet<UserId> = want.users.iter().copied().collect();
    for user in &wanted_users {
        // An inactive user is in no group.
        let Some(placement) = d.placement(*user) else {
            continue;
        };
        if current.contains(user) {
            continue;
        }
        let mut groups: Vec<GroupRef> = placement
            .groups
            .iter()
            .map(|g| GroupRef::Existing(*g))
            .collect();
        groups.push(this);
        changes.push(put(d, *user, profiles, groups));
    }
    for user in current.iter().filter(|u| !wanted_users.contains(u)) {
        let Some(placement) = d.placement(*user) else {
            continue;
        };
        let groups = placement
            .groups
            .iter()
            .filter(|g| Some(**g) != target)
            .map(|g| GroupRef::Existing(*g))
            .collect();
        changes.push(put(d, *user, profiles, groups));
    }
    Ok(changes)
}

impl Service {
    /// Look up the SCIM ids of `users` and the users of `scim_ids` that `ids` does not know
    /// yet (one query, none when it knows them all).
    async fn resolve(
        &self,
        team: &TeamRecord,
        ids: &mut ScimIds,
        users: &[UserId],
        scim_ids: &[&str],
    ) -> ScimResult<()> {
        let users: Vec<UserId> = users
            .iter()
            .filter(|u| !ids.checked.contains(u))
            .copied()
            .collect();
        let scim_ids: Vec<&str> = scim_ids
            .iter()
            .filter(|s| !ids.by_scim_id.contains_key(**s))
            .copied()
            .collect();
        if users.is_empty() && scim_ids.is_empty() {
            return Ok(());
        }
        let pairs = self
            .store
            .scim_user_ids(team.access.team_id, &users, &scim_ids)
            .await?;
        ids.checked.extend(users);
        for found in pairs {
            let user = found.user_id;
            ids.checked.insert(user);
            if let (Some(name), Some(avatar)) = (found.name, found.avatar) {
                ids.profiles.insert(user, (name, avatar));
            }
            ids.by_scim_id.insert(found.scim_id.clone(), user);
            ids.by_user.insert(user, found.scim_id);
        }
        Ok(())
    }

    /// Names and avatars of SCIM users, as their member rows are rewritten unchanged but
    /// for groups: those `ids` looked up already, the others in one query.
    async fn profiles_of(
        &self,
        team: &TeamRecord,
        users: &[UserId],
        ids: &ScimIds,
    ) -> ScimResult<HashMap<UserId, (Nickname, Avatar)>> {
        let mut profiles = HashMap::with_capacity(users.len());
        let mut missing = Vec::new();
        for user in users {
            match ids.profiles.get(user) {
                Some(profile) => {
                    profiles.insert(*user, profile.clone());
                }
                None => missing.push(*user),
            }
        }
        let read = self
            .store
            .member_profiles(team.access.team_id, &missing)
            .await?;
        profiles.extend(read.into_iter().map(|p| (p.user_id, (p.name, p.avatar))));
        Ok(profiles)
    }

    /// Stored names and avatars of any members, as they are.
    async fn member_rows_of(
        &self,
        team: &TeamRecord,
        users: &[UserId],
    ) -> ScimResult<HashMap<UserId, (Nickname, Avatar)>> {
        let mut details = HashMap::with_capacity(users.len());
        for user in users {
            if let Some(found) = self
                .store
                .member_details(team.access.team_id, *user)
                .await?
            {
                details.insert(*user, (found.nickname, found.avatar));
            }
        }
        Ok(details)
    }

    fn render_group(
        d: &Directory,
        id: GroupId,
        ids: &ScimIds,
        location: &Location,
    ) -> Result<Versioned, RuleError> {
        let group = d.group(id)?.group;
        Ok(render::group(
            &group,
            d,
            &|u| ids.by_user.get(&u).cloned(),
            location,
        ))
    }

    /// Group `id` as answered, its members' SCIM ids looked up through `ids` (with those of
    /// `named`, users the caller is about to need).
    async fn group_of(
        &self,
        team: &TeamRecord,
        id: GroupId,
        ids: &mut ScimIds,
        named: &[&str],
        location: &Location,
    ) -> ScimResult<Versioned> {
        // Members added between the look-up and the rendering are looked up on another turn;
        // the last turn renders what it knows.
        for turn in 0..3 {
            let rendered = self
                .directories
                .read(&*self.store, team, |d| {
                    let members = d.direct_members(id);
                    Ok(if turn == 2 || ids.knows(members) {
                        Ok(Self::render_group(d, id, ids, location).ok())
                    } else {
                        Err(members.to_vec())
                    })
                })
                .await?;
            match rendered {
                Ok(found) => {
                    return found.ok_or_else(|| {
                        ScimError::not_found(format!("no group with id {id}")).into()
                    });
                }
                Err(members) => self.resolve(team, ids, &members, named).await?,
            }
        }
        Err(ScimError::not_found(format!("no group with id {id}")).into())
    }

    pub async fn scim_get_group(
        &self,
        team: &TeamRecord,
        id: &str,
        location: &Location,
    ) -> ScimResult<Versioned> {
        self.group_of(team, group_id(id)?, &mut ScimIds::default(), &[], location)
            .await
    }

    pub async fn scim_list_groups(
        &self,
        team: &TeamRecord,
        filter: Option<&Filter>,
        location: &Location,
    ) -> ScimResult<Vec<Versioned>> {
        // The existence checks providers make (`displayName eq`, `externalId eq`) pick their
        // groups by the two attributes alone, before any member is looked up.
        let by_name = filter.filter(|f| {
            equality(f).is_some_and(|(path, _)| {
                path.sub.is_none()
                    && path.urn.is_none()
                    && ["displayName", "externalId"]
                        .iter()
                        .any(|name| path.name.eq_ignore_ascii_case(name))
            })
        });
        let (valid, members) = self
            .directories
            .read(&*self.store, team, |d| {
                let mut valid: Vec<GroupId> = d
                    .all_groups()
                    .filter(|g| g.is_valid)
                    .filter(|g| by_name.is_none_or(|f| matches(f, &render::names(g))))
                    .map(|g| g.id)
                    .collect();
                valid.sort_unstable();
                let members: Vec<UserId> = valid
                    .iter()
                    .flat_map(|id| d.direct_members(*id).iter().copied())
                    .collect::<HashSet<_>>()
                    .into_iter()
                    .collect();
                Ok((valid, members))
            })
            .await?;
        let mut ids = ScimIds::default();
        self.resolve(team, &mut ids, &members, &[]).await?;
        Ok(self
            .directories
            .read(&*self.store, team, |d| {
                // A group deleted since is left out.
                Ok(valid
                    .into_iter()
                    .filter_map(|id| Self::render_group(d, id, &ids, location).ok())
                    .filter(|g| filter.is_none_or(|f| matches(f, &g.resource)))
                    .collect())
            })
            .await?)
    }

    /// Create or change a group as `body` says, in one decision and one commit.
    async fn write_group(
        &self,
        team: &TeamRecord,
        target: Option<(GroupId, &ReadGroup)>,
        body: &Value,
        mut ids: ScimIds,
        location: &Location,
    ) -> ScimResult<Option<Versioned>> {
        let stored = schema::normalize(body, &schema::GROUP)?;
        let current_members = target.map_or_else(Vec::new, |(_, read)| read.members.clone());
        let (target, read) = (target.map(|(id, _)| id), target.map(|(_, read)| read));
        self.resolve(team, &mut ids, &current_members, &member_values(&stored))
            .await?;
        let want = desired(&stored, &ids)?;
        // Only the users whose groups change have their rows rewritten.
        let wanted: HashSet<UserId> = want.users.iter().copied().collect();
        let current: HashSet<UserId> = current_members
            .into_iter()
            .filter(|u| ids.by_user.contains_key(u))
            .collect();
        let touched: Vec<UserId> = wanted.symmetric_difference(&current).copied().collect();
        let profiles = self.profiles_of(team, &touched, &ids).await?;
        let max_depth = self.settings.max_group_depth;
        let (written, created) = self
            .directories
            .write(&*self.store, team, Origin::scim(), |d| {
                if let (Some(id), Some(read)) = (target, read)
                    && !read.stands(d, id, &ids)
                {
                    return Ok((Vec::new(), false));
                }
                Ok((decide(d, target, &want, &ids, &profiles, max_depth)?, true))
            })
            .await?;
        if !written {
            return Ok(None);
        }
        let id = target.or(created.first().copied()).unwrap_or_default();
        Ok(Some(
            self.group_of(team, id, &mut ids, &[], location).await?,
        ))
    }

    pub async fn scim_create_group(
        &self,
        team: &TeamRecord,
        body: &Value,
        location: &Location,
    ) -> ScimResult<Versioned> {
        self.write_group(team, None, body, ScimIds::default(), location)
            .await?
            .ok_or_else(|| ServiceError::Busy.into())
    }

    /// The group `target` names, as answered, refused unless its `If-Match` names the group's
    /// version, with the SCIM ids of its members and of the users `named`.
    async fn current_group(
        &self,
        target: Target<'_>,
        named: &[&str],
    ) -> ScimResult<(GroupId, Versioned, ScimIds)> {
        let id = group_id(target.id)?;
        let mut ids = ScimIds::default();
        let current = self
            .group_of(target.team, id, &mut ids, named, target.location)
            .await?;
        check_version(&current, target.if_match)?;
        Ok((id, current, ids))
    }

    pub async fn scim_replace_group(
        &self,
        target: Target<'_>,
        body: &Value,
    ) -> ScimResult<Versioned> {
        self.rewrite_group(target, &[], |_| Ok(body.clone())).await
    }

    pub async fn scim_patch_group(
        &self,
        target: Target<'_>,
        operations: &[Operation],
    ) -> ScimResult<Versioned> {
        let named = named_in(operations);
        self.rewrite_group(target, &named, |current| {
            patched(current, operations, GROUP_EXTENSION_SCHEMA)
        })
        .await
    }

    /// Write the group `target` names whole, as `new` makes it from the group as answered
    /// (with the SCIM ids of the users `named`), over the group as it was read: should another
    /// write change the group's row or members between the read and the decision, nothing is
    /// written and the request is made again on the group as it then is (its `If-Match`
    /// checked again), so that no write undoes another.
    async fn rewrite_group(
        &self,
        target: Target<'_>,
        named: &[&str],
        new: impl Fn(Versioned) -> ScimResult<Value>,
    ) -> ScimResult<Versioned> {
        for _ in 0..REWRITE_ATTEMPTS {
            // Read before the group is answered, so that any write after it is seen.
            let read = match group_id(target.id) {
                Ok(id) => {
                    self.directories
                        .read(&*self.store, target.team, |d| Ok(ReadGroup::of(d, id)))
                        .await?
                }
                Err(_) => None,
            };
            let (id, current, ids) = self.current_group(target, named).await?;
            let body = new(current)?;
            let Some(read) = read else {
                continue;
            };
            let written = self
                .write_group(target.team, Some((id, &read)), &body, ids, target.location)
                .await?;
            if let Some(written) = written {
                return Ok(written);
            }
        }
        Err(ServiceError::Busy.into())
    }

    /// Delete a group: its members leave it, the groups under it move up to its parent, and
    /// it becomes a tombstone, in one commit.
    pub async fn scim_delete_group(&self, target: Target<'_>) -> ScimResult<()> {
        let (id, _, _) = self.current_group(target, &[]).await?;
        let team = target.team;
        let members: Vec<UserId> = self
            .directories
            .read(&*self.store, team, |d| Ok(d.direct_members(id).to_vec()))
            .await?;
        let profiles = self.member_rows_of(team, &members).await?;
        self.directories
            .write(&*self.store, team, Origin::scim(), |d| {
                let now = unix_now();
                let mut group = d.group(id)?.group;
                let mut changes = Vec::new();
                for child in d.children_of(id) {
                    let mut child = d.group(*child)?.group;
                    child.source = Source::Sync;
                    child.upd_at = now;
                    let parent = GroupRef::Existing(group.parent_id);
                    changes.push(Change::UpdateGroup {
                        group: child,
                        parent,
                    });
                }
                for user in d.direct_members(id) {
                    let Some(placement) = d.placement(*user) else {
                        continue;
                    };
                    let groups = placement
                        .groups
                        .iter()
                        .filter(|g| **g != id)
                        .map(|g| GroupRef::Existing(*g))
                        .collect();
                    changes.push(put(d, *user, &profiles, groups));
                }
                group.is_valid = false;
                group.source = Source::Sync;
                group.upd_at = now;
                let parent = GroupRef::Existing(group.parent_id);
                changes.push(Change::UpdateGroup { group, parent });
                Ok((changes, ()))
            })
            .await?;
        Ok(())
    }
}
