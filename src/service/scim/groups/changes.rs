//! What a SCIM group write is made of, on the directory's copy and without I/O: the SCIM ids
//! a request involves, the group it wants, whether the group it read still stands, and the
//! changes that make the group so.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde_json::{Map, Value};

use crate::domain::RuleError;
use crate::domain::directory::{Change, Directory, Group, GroupRef, Kept, MemberRow, new_group};
use crate::domain::scim::patch::Operation;
use crate::domain::scim::schema::GROUP_EXTENSION_SCHEMA;
use crate::domain::scim::{ScimError, attribute};
use crate::domain::values::{
    self, Avatar, GroupId, GroupName, Nickname, ROOT_GROUP, RemoteId, Role, Source, UserId,
};
use crate::service::scim::ScimResult;
use crate::service::unix_now;

/// The SCIM ids of the users one request involves, both ways: looked up as they are needed,
/// never the whole directory's.
#[derive(Default)]
pub(super) struct ScimIds {
    pub(super) by_scim_id: HashMap<String, UserId>,
    pub(super) by_user: HashMap<UserId, String>,
    /// Users looked up, SCIM users or not.
    pub(super) checked: HashSet<UserId>,
}

impl ScimIds {
    /// Whether every one of `users` has been looked up.
    pub(super) fn knows(&self, users: &[UserId]) -> bool {
        users.iter().all(|u| self.checked.contains(u))
    }

    /// Those of `members` that are SCIM users known here: the members of a group a write keeps
    /// or removes (one it does not know, such as a member added by the API, it leaves alone).
    pub(super) fn known_among(&self, members: &[UserId]) -> BTreeSet<UserId> {
        members
            .iter()
            .copied()
            .filter(|user| self.by_user.contains_key(user))
            .collect()
    }
}

/// The `value`s of the members of a normalized group that may name users (not typed `Group`).
pub(super) fn member_values(stored: &Map<String, Value>) -> Vec<&str> {
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
pub(super) fn named_in(operations: &[Operation]) -> Vec<&str> {
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
pub(super) struct Desired {
    name: GroupName,
    remote_id: RemoteId,
    parent: GroupId,
    pub(super) users: Vec<UserId>,
    groups: Vec<GroupId>,
}

pub(super) fn group_id(id: &str) -> ScimResult<GroupId> {
    match id.parse::<GroupId>() {
        Ok(id) if id > ROOT_GROUP && id <= values::MAX_GROUP_ID => Ok(id),
        _ => Err(ScimError::not_found(format!("no group with id {id}")).into()),
    }
}

pub(super) fn desired(stored: &Map<String, Value>, ids: &ScimIds) -> ScimResult<Desired> {
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

/// Member `user_id`, placed with `role`, in new groups (its role, name and avatar as they are).
fn regrouped(user_id: UserId, role: Role, groups: Vec<GroupRef>) -> Change {
    Change::PutMember {
        member: MemberRow {
            user_id,
            role,
            nickname: Nickname::default(),
            avatar: Avatar::default(),
            source: Source::Sync,
        },
        groups: Some(groups),
        kept: Kept::BOTH,
    }
}

/// A group as a write read it: its row and its direct members.
pub(super) struct ReadGroup {
    group: Group,
    pub(super) members: Vec<UserId>,
}

impl ReadGroup {
    /// `id` as `d` holds it; `None`: no such group.
    pub(super) fn of(d: &Directory, id: GroupId) -> Option<ReadGroup> {
        Some(ReadGroup {
            group: d.group(id).ok()?.group,
            members: d.direct_members(id).to_vec(),
        })
    }

    /// Whether a write made from this read of `id` still stands on `d`: the group's row is as
    /// read, and so are its members among the SCIM users the write knows (`ids`), which are
    /// those it keeps or removes. A member it does not know, added meanwhile, it leaves alone,
    /// so that members added to one group at once do not make each other start again.
    pub(super) fn stands(&self, d: &Directory, id: GroupId, ids: &ScimIds) -> bool {
        d.group(id).is_ok_and(|view| view.group == self.group)
            && ids.known_among(d.direct_members(id)) == ids.known_among(&self.members)
    }
}

/// The changes that make group `target` (or a new group) what `want` says.
pub(super) fn decide(
    d: &Directory,
    target: Option<GroupId>,
    want: &Desired,
    ids: &ScimIds,
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
    let current = target
        .map(|id| ids.known_among(d.direct_members(id)))
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
        changes.push(regrouped(*user, placement.role, groups));
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
        changes.push(regrouped(*user, placement.role, groups));
    }
    Ok(changes)
}

/// The changes that delete group `id`: its members leave it, the groups under it move up to
/// its parent, and it becomes a tombstone.
pub(super) fn deletion(d: &Directory, id: GroupId) -> Result<Vec<Change>, RuleError> {
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
        changes.push(regrouped(*user, placement.role, groups));
    }
    group.is_valid = false;
    group.source = Source::Sync;
    group.upd_at = now;
    let parent = GroupRef::Existing(group.parent_id);
    changes.push(Change::UpdateGroup { group, parent });
    Ok(changes)
}
