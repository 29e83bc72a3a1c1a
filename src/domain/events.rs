//! The change feed's vocabulary (§11): who made a change ([`Actor`]), the events a batch of
//! [`Change`]s amounts to ([`derive`]), and an event as stored and shown ([`Event`]).
//!
//! Events are derived from the decided changes and the copy of the directory they were decided
//! on, before the store writes them: a created group is named by its place in the batch
//! ([`GroupRef::New`]) until the store has given it an id ([`Draft::resolve`]). Per-object events
//! are compact (the fields that changed, ids rather than paths), so that the first sync of a
//! large directory stays cheap.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::directory::{Change, Directory, Group, GroupRef};
use super::sync::MemberState;
use super::values::{GroupId, Role, UserId};

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

/// The object an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    Group {
        group: GroupRef,
        remote_id: String,
    },
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
    /// Anything else, as it is shown (a sync's report).
    pub other: Option<Value>,
}

/// An event before the store has numbered it and resolved the groups the batch creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    pub event_type: EventType,
    pub subject: Subject,
    /// `None` for a creation.
    pub before: Option<Fields>,
    /// `None` for a deletion.
    pub after: Option<Fields>,
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
    pub seq: i64,
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
    for change in changes {
        let draft = match change {
            Change::CreateGroup { parent, group } => {
                created += 1;
                Some(Draft {
                    event_type: EventType::GroupCreated,
                    subject: Subject::Group {
                        group: GroupRef::New(created - 1),
                        remote_id: group.remote_id.clone(),
                    },
                    before: None,
                    after: Some(group_fields(group, *parent)),
                })
            }
            Change::UpdateGroup { group, parent } => group_change(before, group, *parent),
            Change::PutMember { member, groups } => {
                let profile = profiles.prior(member.user_id);
                match before.placement(member.user_id) {
                    None => Some(Draft {
                        event_type: EventType::MemberAdded,
                        subject: Subject::Member(member.user_id),
                        before: None,
                        after: Some(Fields {
                            role: Some(member.role),
                            groups: Some(groups.clone()),
                            ..Fields::default()
                        }),
                    }),
                    Some(old) => {
                        let mut was = Fields::default();
                        let mut now = Fields::default();
                        if old.role != member.role {
                            was.role = Some(old.role);
                            now.role = Some(member.role);
                        }
                        if !same_groups(&old.groups, groups) {
                            was.groups =
                                Some(old.groups.iter().copied().map(GroupRef::Existing).collect());
                            now.groups = Some(groups.clone());
                        }
                        if let Some((nickname, avatar)) = profile {
                            if nickname != member.nickname {
                                was.nickname = Some(nickname.to_owned());
                                now.nickname = Some(member.nickname.clone());
                            }
                            if avatar != member.avatar {
                                was.avatar = Some(avatar.to_owned());
                                now.avatar = Some(member.avatar.clone());
                            }
                        }
                        (now != Fields::default()).then_some(Draft {
                            event_type: EventType::MemberUpdated,
                            subject: Subject::Member(member.user_id),
                            before: Some(was),
                            after: Some(now),
                        })
                    }
                }
            }
            Change::RemoveMember(user_id) => before.placement(*user_id).map(|old| Draft {
                event_type: EventType::MemberRemoved,
                subject: Subject::Member(*user_id),
                before: Some(Fields {
                    role: Some(old.role),
                    groups: Some(old.groups.iter().copied().map(GroupRef::Existing).collect()),
                    ..Fields::default()
                }),
                after: None,
            }),
        };
        drafts.extend(draft);
    }
    drafts
}

/// A sync's summary: its report as the API answers it.
pub fn sync_summary(report: Value) -> Draft {
    Draft {
        event_type: EventType::SyncApplied,
        subject: Subject::Directory,
        before: None,
        after: Some(Fields {
            other: Some(report),
            ..Fields::default()
        }),
    }
}

fn group_fields(group: &Group, parent: GroupRef) -> Fields {
    Fields {
        name: Some(group.name.clone()),
        parent_id: Some(parent),
        order: Some(group.order),
        remote_id: Some(group.remote_id.clone()),
        ..Fields::default()
    }
}

/// The event of rewriting an existing group: deleted, or updated in the fields that changed.
fn group_change(before: &Directory, group: &Group, parent: GroupRef) -> Option<Draft> {
    let old = before.stored_group(group.id)?;
    let subject = |remote_id: &str| Subject::Group {
        group: GroupRef::Existing(group.id),
        remote_id: remote_id.to_owned(),
    };
    if !group.is_valid {
        return old.is_valid.then(|| Draft {
            event_type: EventType::GroupDeleted,
            subject: subject(&old.remote_id),
            before: Some(group_fields(old, GroupRef::Existing(old.parent_id))),
            after: None,
        });
    }
    if !old.is_valid {
        // A tombstone brought back (a sync re-creating a remote id) is a creation.
        return Some(Draft {
            event_type: EventType::GroupCreated,
            subject: subject(&group.remote_id),
            before: None,
            after: Some(group_fields(group, parent)),
        });
    }
    let mut was = Fields::default();
    let mut now = Fields::default();
    if old.name != group.name {
        was.name = Some(old.name.clone());
        now.name = Some(group.name.clone());
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
        was.remote_id = Some(old.remote_id.clone());
        now.remote_id = Some(group.remote_id.clone());
    }
    (now != Fields::default()).then(|| Draft {
        event_type: EventType::GroupUpdated,
        subject: subject(&group.remote_id),
        before: Some(was),
        after: Some(now),
    })
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

impl Draft {
    /// The event with the batch's created groups named by their ids (`created[n]` is the id of
    /// the n-th created group).
    pub fn resolve(&self, created: &[GroupId]) -> NewEvent {
        let id = |group: GroupRef| match group {
            GroupRef::Existing(id) => id,
            GroupRef::New(n) => created.get(n).copied().unwrap_or_default(),
        };
        let (object_kind, object_id, remote_id) = match &self.subject {
            Subject::Group { group, remote_id } => {
                ("group", Some(id(*group)), Some(remote_id.clone()))
            }
            Subject::Member(user_id) => ("member", Some(*user_id), None),
            Subject::Directory => ("directory", None, None),
        };
        let json = |fields: &Option<Fields>| fields.as_ref().map(|f| f.to_json(&id));
        NewEvent {
            event_type: self.event_type.as_str(),
            object_kind,
            object_id,
            remote_id,
            before: json(&self.before),
            after: json(&self.after),
        }
    }
}

impl Fields {
    fn to_json(&self, id: &dyn Fn(GroupRef) -> GroupId) -> String {
        let mut map = match &self.other {
            Some(Value::Object(map)) => map.clone(),
            _ => Map::new(),
        };
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                map.insert(key.to_owned(), value);
            }
        };
        put("name", self.name.clone().map(Value::from));
        put("parent_id", self.parent_id.map(|g| Value::from(id(g))));
        put("order", self.order.map(Value::from));
        put("remote_id", self.remote_id.clone().map(Value::from));
        put("role", self.role.map(|r| Value::from(r.code())));
        put("nickname", self.nickname.clone().map(Value::from));
        put("avatar", self.avatar.clone().map(Value::from));
        put(
            "group_ids",
            self.groups
                .as_ref()
                .map(|groups| groups.iter().map(|g| Value::from(id(*g))).collect()),
        );
        Value::Object(map).to_string()
    }
}
