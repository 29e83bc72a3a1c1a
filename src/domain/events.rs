//! The change feed's vocabulary (§11): who made a change ([`Actor`]), the events a batch of
//! [`Change`]s amounts to ([`derive()`]), and an event as stored and shown ([`Event`]).
//!
//! Events are derived from the decided changes and the copy of the directory they were decided
//! on, before the store writes them: a created group is named by its place in the batch
//! ([`GroupRef::New`]) until the store has given it an id ([`Draft::resolve`]). Per-object events
//! are compact (the fields that changed, ids rather than paths), so that the first sync of a
//! large directory stays cheap.

use std::collections::HashMap;

use serde_json::Value;

use super::directory::{Change, Directory, Group, GroupRef, Kept, MemberRow, Placement};
use super::sync::MemberState;
use super::values::{EventSeq, GroupId, Role, UserId};

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorKind {
    /// An app through the API (`appid` is set).
    App,
    /// A directory sync, through the API or `contactsd sync`.
    Sync,
    /// A SCIM client.
    Scim,
    /// An operator's command line.
    Admin,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::App => "app",
            ActorKind::Sync => "sync",
            ActorKind::Scim => "scim",
            ActorKind::Admin => "admin",
        }
    }
}

/// The actor of a write and the request that made it, stored with each of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub kind: ActorKind,
    pub appid: Option<String>,
    /// The id of the HTTP request (§2), when the change came through one.
    pub request_id: Option<String>,
}

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    GroupCreated,
    GroupUpdated,
    GroupDeleted,
    MemberAdded,
    MemberUpdated,
    MemberRemoved,
    SyncApplied,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::GroupCreated => "group.created",
            EventType::GroupUpdated => "group.updated",
            EventType::GroupDeleted => "group.deleted",
            EventType::MemberAdded => "member.added",
            EventType::MemberUpdated => "member.updated",
            EventType::MemberRemoved => "member.removed",
            EventType::SyncApplied => "sync.applied",
        }
    }
}

/// The object an event is about (a group's remote id is read from its change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Group(GroupRef),
    Member(UserId),
    /// The directory as a whole (a sync's summary).
    Directory,
}

/// Fields of an object before or after a change; only those that changed are set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields {
    pub name: Option<String>,
    pub parent_id: Option<GroupRef>,
    pub order: Option<i64>,
    pub remote_id: Option<String>,
    pub role: Option<Role>,
    pub nickname: Option<String>,
    pub avatar: Option<String>,
    pub groups: Option<Vec<GroupRef>>,
    /// Anything else, as it is shown (a sync's report; then no other field is set).
    pub other: Option<Value>,
}

/// An event before the store has numbered it and resolved the groups the batch creates. It
/// is small (a first sync makes one per object): what the change itself says (the object, a
/// creation's fields, a group's remote id) is read from the change when the event is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub event_type: EventType,
    pub subject: Subject,
    /// The index of its change in the batch (`None` for a summary).
    pub change: Option<u32>,
    /// `None` for a creation.
    pub before: Option<Box<Fields>>,
    /// The changed fields of an update or a summary; `None` otherwise (a creation's fields come
    /// from its change; a deletion has none).
    pub after: Option<Box<Fields>>,
}

/// An event ready to store, apart from its number, time and actor (the same for its batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_type: &'static str,
    pub object_kind: &'static str,
    pub object_id: Option<i64>,
    pub remote_id: Option<String>,
    /// JSON objects.
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A stored event, as the feed shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub seq: EventSeq,
    pub event_type: String,
    /// Unix seconds.
    pub time: i64,
    pub actor_kind: String,
    pub appid: Option<String>,
    pub request_id: Option<String>,
    pub object_kind: String,
    pub object_id: Option<i64>,
    pub remote_id: Option<String>,
    /// JSON objects.
    pub before: Option<String>,
    pub after: Option<String>,
}

/// Names and avatars of members before a change: the in-memory directory holds placements only.
pub trait PriorProfiles: Sync {
    /// The member's nickname and avatar before the batch, if known.
    fn prior(&self, user_id: UserId) -> Option<(&str, &str)>;
}

/// No profile is known: a change of name or avatar alone is not told apart from none.
impl PriorProfiles for () {
    fn prior(&self, _: UserId) -> Option<(&str, &str)> {
        None
    }
}

/// A sync knows every member's stored details.
impl PriorProfiles for HashMap<UserId, MemberState> {
    fn prior(&self, user_id: UserId) -> Option<(&str, &str)> {
        self.get(&user_id)
            .map(|state| (state.nickname.as_str(), state.avatar.as_str()))
    }
}

/// The events of a batch of `changes` decided on `before`, in the batch's order. A change that
/// alters none of the fields an event shows (an update that rewrites a group as it was) yields
/// no event.
pub fn derive(before: &Directory, changes: &[Change], profiles: &dyn PriorProfiles) -> Vec<Draft> {
    let mut drafts = Vec::with_capacity(changes.len());
    let mut created = 0;
    for (index, change) in changes.iter().enumerate() {
        let draft = |event_type, subject, was, now| Draft {
            event_type,
            subject,
            change: u32::try_from(index).ok(),
            before: was,
            after: now,
        };
        let event = match change {
            Change::CreateGroup { .. } => {
                created += 1;
                let subject = Subject::Group(GroupRef::New(created - 1));
                Some(draft(EventType::GroupCreated, subject, None, None))
            }
            Change::UpdateGroup { group, parent } => {
                group_change(before, group, *parent).map(|(event_type, was, now)| {
                    draft(
                        event_type,
                        Subject::Group(GroupRef::Existing(group.id)),
                        was,
                        now,
                    )
                })
            }
            Change::PutMember {
                member,
                groups,
                kept,
            } => {
                let subject = Subject::Member(member.user_id);
                match before.placement(member.user_id) {
                    None => Some(draft(EventType::MemberAdded, subject, None, None)),
                    Some(old) => {
                        let profile = profiles.prior(member.user_id);
                        let regrouped = groups
                            .as_ref()
                            .filter(|groups| !same_groups(&old.groups, groups))
                            .cloned();
                        let (was, now) = member_change(old, member, regrouped, profile, *kept);
                        (now != Fields::default()).then(|| {
                            let (was, now) = (Some(Box::new(was)), Some(Box::new(now)));
                            draft(EventType::MemberUpdated, subject, was, now)
                        })
                    }
                }
            }
            Change::StepMember {
                member,
                group,
                step,
            } => {
                let subject = Subject::Member(member.user_id);
                match before.placement(member.user_id) {
                    // A user not yet a member (the rules step members only): told as what
                    // the store makes of it, a member added in that group or in none.
                    None => {
                        let groups = step.applied_to(&[], *group).unwrap_or_default();
                        let now = Fields {
                            role: Some(member.role),
                            groups: Some(existing(&groups)),
                            ..Fields::default()
                        };
                        let now = Some(Box::new(now));
                        Some(draft(EventType::MemberAdded, subject, None, now))
                    }
                    Some(old) => {
                        let regrouped = step
                            .applied_to(&old.groups, *group)
                            .map(|groups| existing(&groups));
                        let (was, now) = member_change(old, member, regrouped, None, Kept::BOTH);
                        (now != Fields::default()).then(|| {
                            let (was, now) = (Some(Box::new(was)), Some(Box::new(now)));
                            draft(EventType::MemberUpdated, subject, was, now)
                        })
                    }
                }
            }
            Change::RemoveMember(user_id) => before.placement(*user_id).map(|old| {
                let was = Fields {
                    role: Some(old.role),
                    groups: Some(existing(&old.groups)),
                    ..Fields::default()
                };
                let subject = Subject::Member(*user_id);
                draft(EventType::MemberRemoved, subject, Some(Box::new(was)), None)
            }),
        };
        drafts.extend(event);
    }
    drafts
}

/// A sync's summary: its report as the API answers it.
pub fn sync_summary(report: Value) -> Draft {
    Draft {
        event_type: EventType::SyncApplied,
        subject: Subject::Directory,
        change: None,
        before: None,
        after: Some(Box::new(Fields {
            other: Some(report),
            ..Fields::default()
        })),
    }
}

fn existing(groups: &[GroupId]) -> Vec<GroupRef> {
    groups.iter().copied().map(GroupRef::Existing).collect()
}

fn group_fields(group: &Group, parent: GroupRef) -> Fields {
    Fields {
        name: Some(group.name.to_string()),
        parent_id: Some(parent),
        order: Some(group.order),
        remote_id: Some(group.remote_id.to_string()),
        ..Fields::default()
    }
}

/// What rewriting an existing group amounts to: deleted, created again (a tombstone brought
/// back), or updated in the fields that changed (with those fields before and after).
type GroupEvent = (EventType, Option<Box<Fields>>, Option<Box<Fields>>);

fn group_change(before: &Directory, group: &Group, parent: GroupRef) -> Option<GroupEvent> {
    let old = before.stored_group(group.id)?;
    if !group.is_valid {
        let was = group_fields(old, GroupRef::Existing(old.parent_id));
        return old
            .is_valid
            .then(|| (EventType::GroupDeleted, Some(Box::new(was)), None));
    }
    if !old.is_valid {
        return Some((EventType::GroupCreated, None, None));
    }
    let mut was = Fields::default();
    let mut now = Fields::default();
    if old.name != group.name {
        was.name = Some(old.name.to_string());
        now.name = Some(group.name.to_string());
    }
    if parent != GroupRef::Existing(old.parent_id) {
        was.parent_id = Some(GroupRef::Existing(old.parent_id));
        now.parent_id = Some(parent);
    }
    if old.order != group.order {
        was.order = Some(old.order);
        now.order = Some(group.order);
    }
    if old.remote_id != group.remote_id {
        was.remote_id = Some(old.remote_id.to_string());
        now.remote_id = Some(group.remote_id.to_string());
    }
    (now != Fields::default()).then(|| {
        (
            EventType::GroupUpdated,
            Some(Box::new(was)),
            Some(Box::new(now)),
        )
    })
}

/// The fields of a member that a rewrite changes, before and after; `regrouped` is the
/// member's groups afterwards when they differ from before; `profile`, its name and avatar
/// before, if known, of which those `kept` stay.
fn member_change(
    old: &Placement,
    member: &MemberRow,
    regrouped: Option<Vec<GroupRef>>,
    profile: Option<(&str, &str)>,
    kept: Kept,
) -> (Fields, Fields) {
    let mut was = Fields::default();
    let mut now = Fields::default();
    if old.role != member.role {
        was.role = Some(old.role);
        now.role = Some(member.role);
    }
    if let Some(groups) = regrouped {
        was.groups = Some(existing(&old.groups));
        now.groups = Some(groups);
    }
    if let Some((nickname, avatar)) = profile {
        if !kept.nickname && member.nickname != nickname {
            was.nickname = Some(nickname.to_owned());
            now.nickname = Some(member.nickname.to_string());
        }
        if !kept.avatar && member.avatar != avatar {
            was.avatar = Some(avatar.to_owned());
            now.avatar = Some(member.avatar.to_string());
        }
    }
    (was, now)
}

/// Whether a member's groups stay the same (`old` ascending; `new` in any order, maybe
/// repeating, maybe naming groups the batch creates).
fn same_groups(old: &[GroupId], new: &[GroupRef]) -> bool {
    let mut ids = Vec::with_capacity(new.len());
    for group in new {
        match group {
            GroupRef::Existing(id) => ids.push(*id),
            GroupRef::New(_) => return false,
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids == old
}

/// `drafts` with [`REGISTERED_USER`](super::directory::REGISTERED_USER) replaced by `user_id`,
/// the id the write's user got (as [`with_registered`](super::directory::with_registered) does
/// for its changes).
pub fn with_registered(drafts: &[Draft], user_id: UserId) -> Vec<Draft> {
    drafts
        .iter()
        .map(|draft| match draft.subject {
            Subject::Member(user) if user == super::directory::REGISTERED_USER => Draft {
                subject: Subject::Member(user_id),
                ..draft.clone()
            },
            _ => draft.clone(),
        })
        .collect()
}

impl Draft {
    /// The event of a batch of `changes` whose created groups got the ids `created` (`created[n]`
    /// is the id of the n-th created group).
    pub fn resolve(&self, changes: &[Change], created: &[GroupId]) -> NewEvent {
        let id = |group: GroupRef| match group {
            GroupRef::Existing(id) => id,
            GroupRef::New(n) => created.get(n).copied().unwrap_or_default(),
        };
        let change = self
            .change
            .and_then(|index| changes.get(usize::try_from(index).ok()?));
        let (object_kind, object_id, remote_id) = match self.subject {
            Subject::Group(group) => {
                let remote_id = match change {
                    Some(Change::CreateGroup { group, .. } | Change::UpdateGroup { group, .. }) => {
                        Some(group.remote_id.to_string())
                    }
                    _ => None,
                };
                ("group", Some(id(group).get()), remote_id)
            }
            Subject::Member(user_id) => ("member", Some(user_id.get()), None),
            Subject::Directory => ("directory", None, None),
        };
        let after = match (self.event_type, change) {
            (EventType::GroupCreated, Some(Change::CreateGroup { parent, group }))
            | (EventType::GroupCreated, Some(Change::UpdateGroup { group, parent })) => {
                Some(group_fields(group, *parent).to_json(&id))
            }
            (EventType::MemberAdded, Some(Change::PutMember { member, groups, .. })) => Some(
                Fields {
                    role: Some(member.role),
                    // A user new to the directory whose groups are kept joins at the root.
                    groups: Some(groups.clone().unwrap_or_default()),
                    ..Fields::default()
                }
                .to_json(&id),
            ),
            _ => self.after.as_ref().map(|fields| fields.to_json(&id)),
        };
        NewEvent {
            event_type: self.event_type.as_str(),
            object_kind,
            object_id,
            remote_id,
            before: self.before.as_ref().map(|fields| fields.to_json(&id)),
            after,
        }
    }
}

impl Fields {
    /// The set fields as a JSON object, written directly (a first sync writes a million).
    fn to_json(&self, id: &dyn Fn(GroupRef) -> GroupId) -> String {
        if let Some(other) = &self.other {
            return other.to_string();
        }
        let mut json = String::from("{");
        let mut put = |key: &str, value: String| {
            if json.len() > 1 {
                json.push(',');
            }
            json.push('"');
            json.push_str(key);
            json.push_str("\":");
            json.push_str(&value);
        };
        let text = |value: &str| Value::from(value).to_string();
        if let Some(name) = &self.name {
            put("name", text(name));
        }
        if let Some(parent) = self.parent_id {
            put("parent_id", id(parent).to_string());
        }
        if let Some(order) = self.order {
            put("order", order.to_string());
        }
        if let Some(remote_id) = &self.remote_id {
            put("remote_id", text(remote_id));
        }
        if let Some(role) = self.role {
            put("role", role.code().to_string());
        }
        if let Some(nickname) = &self.nickname {
            put("nickname", text(nickname));
        }
        if let Some(avatar) = &self.avatar {
            put("avatar", text(avatar));
        }
        if let Some(groups) = &self.groups {
            // A member in many groups lists them all in each of its events: `itoa` writes an
            // id in a fraction of what `fmt` costs.
            let mut number = itoa::Buffer::new();
            let mut ids = String::with_capacity(groups.len() * 8 + 2);
            ids.push('[');
            for (n, group) in groups.iter().enumerate() {
                if n > 0 {
                    ids.push(',');
                }
                ids.push_str(number.format(id(*group).get()));
            }
            ids.push(']');
            put("group_ids", ids);
        }
        json.push('}');
        json
    }
}
