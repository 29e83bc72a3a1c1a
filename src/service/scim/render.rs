//! Resources as answered: `id`, `schemas`, the stored attributes, `meta` with the absolute
//! location and a version computed from the content (a weak ETag that changes with anything a
//! client can see).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::Versioned;
use crate::domain::directory::{Directory, Group};
use crate::domain::scim::schema::{
    ENTERPRISE_SCHEMA, GROUP_EXTENSION_SCHEMA, GROUP_SCHEMA, USER_SCHEMA,
};
use crate::domain::values::{GroupId, ROOT_GROUP, UserId};
use crate::store::scim::ScimUserRecord;

/// The service's base URL as the client reached it (`http://host/scim/v2`), for `location`
/// and `$ref`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location(pub String);

impl Location {
    pub fn user(&self, id: &str) -> String {
        format!("{}/Users/{id}", self.0)
    }

    pub fn group(&self, id: GroupId) -> String {
        format!("{}/Groups/{id}", self.0)
    }
}

pub(super) fn time(unix_seconds: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix_seconds, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Add `meta` (with the version of everything else) to a resource.
fn finish(
    mut resource: Map<String, Value>,
    kind: &str,
    location: String,
    created: i64,
    modified: i64,
) -> Versioned {
    let digest = Sha256::digest(Value::Object(resource.clone()).to_string().as_bytes());
    let hex: String = digest[..10].iter().map(|b| format!("{b:02x}")).collect();
    let version = format!("W/\"{hex}\"");
    resource.insert(
        "meta".to_owned(),
        json!({
            "resourceType": kind,
            "created": time(created),
            "lastModified": time(modified.max(created)),
            "location": location,
            "version": version,
        }),
    );
    Versioned { resource, version }
}

/// A SCIM user: its stored attributes and its groups from the directory.
pub(super) fn user(
    record: &ScimUserRecord,
    stored: &Map<String, Value>,
    directory: &Directory,
    location: &Location,
) -> Versioned {
    let mut schemas = vec![json!(USER_SCHEMA)];
    if stored.contains_key(ENTERPRISE_SCHEMA) {
        schemas.push(json!(ENTERPRISE_SCHEMA));
    }
    let mut resource = Map::new();
    resource.insert("schemas".to_owned(), Value::Array(schemas));
    resource.insert("id".to_owned(), json!(record.scim_id));
    resource.extend(stored.clone());
    let groups: Vec<Value> = directory
        .placement(record.user_id)
        .map(|p| p.groups.to_vec())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|id| directory.group(id).ok())
        .map(|view| {
            json!({
                "value": view.group.id.to_string(),
                "$ref": location.group(view.group.id),
                "display": view.group.name,
                "type": "direct",
            })
        })
        .collect();
    if !groups.is_empty() {
        resource.insert("groups".to_owned(), Value::Array(groups));
    }
    finish(
        resource,
        "User",
        location.user(&record.scim_id),
        record.created_at,
        record.updated_at,
    )
}

/// The attributes of a group's resource that come from its own row: `displayName` and
/// `externalId` (when it has one).
pub(super) fn names(group: &Group) -> Map<String, Value> {
    let mut resource = Map::new();
    if !group.remote_id.is_empty() {
        resource.insert("externalId".to_owned(), json!(group.remote_id));
    }
    resource.insert("displayName".to_owned(), json!(group.name));
    resource
}

/// A directory group: name, remote id, members that are SCIM users, child groups, parent.
pub(super) fn group(
    group: &Group,
    directory: &Directory,
    scim_id_of: &impl Fn(UserId) -> Option<String>,
    location: &Location,
) -> Versioned {
    let mut resource = Map::new();
    let mut schemas = vec![json!(GROUP_SCHEMA)];
    if group.parent_id != ROOT_GROUP {
        schemas.push(json!(GROUP_EXTENSION_SCHEMA));
    }
    resource.insert("schemas".to_owned(), Value::Array(schemas));
    resource.insert("id".to_owned(), json!(group.id.to_string()));
    resource.extend(names(group));
    let users = directory
        .direct_members(group.id)
        .iter()
        .filter_map(|user_id| scim_id_of(*user_id))
        .map(|id| json!({"value": id, "$ref": location.user(&id), "type": "User"}));
    let children = directory
        .children_of(group.id)
        .iter()
        .map(|id| json!({"value": id.to_string(), "$ref": location.group(*id), "type": "Group"}));
    let members: Vec<Value> = users.chain(children).collect();
    if !members.is_empty() {
        resource.insert("members".to_owned(), Value::Array(members));
    }
    if group.parent_id != ROOT_GROUP {
        resource.insert(
            GROUP_EXTENSION_SCHEMA.to_owned(),
            json!({"parent": {
                "value": group.parent_id.to_string(),
                "$ref": location.group(group.parent_id),
            }}),
        );
    }
    finish(
        resource,
        "Group",
        location.group(group.id),
        group.created_at,
        group.upd_at,
    )
}
