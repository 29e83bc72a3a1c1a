//! SCIM Users: users of the directory's SCIM app, members of the directory while active.

use serde_json::{Map, Value};

use super::render::{self, Location};
use super::{ScimFailure, ScimResult, Versioned, check_version};
use crate::domain::directory::{Change, GroupRef, MemberRow};
use crate::domain::scim::ScimError;
use crate::domain::scim::filter::{Filter, equality, matches};
use crate::domain::scim::patch::{self, Operation};
use crate::domain::scim::schema::{self, ENTERPRISE_SCHEMA};
use crate::domain::values::{Avatar, Nickname, Role, Source, UserId};
use crate::service::directories::Origin;
use crate::service::{Service, unix_now};
use crate::store::TeamRecord;
use crate::store::scim::ScimUserRecord;

fn stored_of(record: &ScimUserRecord) -> ScimResult<Map<String, Value>> {
    match serde_json::from_str(&record.resource) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ScimFailure::Service(
            crate::store::StoreError::Inconsistent(
                "a stored SCIM user is not a JSON object".to_owned(),
            )
            .into(),
        )),
    }
}

/// The member's nickname: `displayName`, else `userName`, cut to the contract's length.
fn nickname_of(stored: &Map<String, Value>) -> Nickname {
    let name = ["displayName", "userName"]
        .iter()
        .filter_map(|key| stored.get(*key).and_then(Value::as_str))
        .map(str::trim)
        .find(|name| !name.is_empty())
        .unwrap_or_default();
    Nickname::shortened(name)
}

/// What a client sent, validated, and whether the user is active.
fn validated(body: &Value) -> ScimResult<(Map<String, Value>, bool)> {
    let stored = schema::normalize(body, &schema::USER)?;
    // An absent `active` is not a deactivation.
    let active = stored.get("active") != Some(&Value::Bool(false));
    Ok((stored, active))
}

fn user_name_key(stored: &Map<String, Value>) -> String {
    stored
        .get("userName")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_lowercase()
}

impl Service {
    async fn render_users(
        &self,
        team: &TeamRecord,
        records: Vec<ScimUserRecord>,
        location: &Location,
    ) -> ScimResult<Vec<Versioned>> {
        let stored = records
            .iter()
            .map(stored_of)
            .collect::<ScimResult<Vec<_>>>()?;
        Ok(self
            .directories
            .read(&*self.store, team, |d| {
                Ok(records
                    .iter()
                    .zip(&stored)
                    .map(|(record, stored)| render::user(record, stored, d, location))
                    .collect())
            })
            .await?)
    }

    async fn scim_user_record(&self, team: &TeamRecord, id: &str) -> ScimResult<ScimUserRecord> {
        self.store
            .scim_user(team.access.team_id, id)
            .await?
            .ok_or_else(|| ScimError::not_found(format!("no user with id {id}")).into())
    }

    pub async fn scim_get_user(
        &self,
        team: &TeamRecord,
        id: &str,
        location: &Location,
    ) -> ScimResult<Versioned> {
        let record = self.scim_user_record(team, id).await?;
        let mut rendered = self.render_users(team, vec![record], location).await?;
        rendered
            .pop()
            .ok_or_else(|| ScimError::not_found(format!("no user with id {id}")).into())
    }

    /// Every user matching `filter`, ascending by creation.
    pub async fn scim_list_users(
        &self,
        team: &TeamRecord,
        filter: Option<&Filter>,
        location: &Location,
    ) -> ScimResult<Vec<Versioned>> {
        let team_id = team.access.team_id;
        // The existence check providers make before a create is one indexed lookup.
        let records = match filter.and_then(equality) {
            Some((path, name))
                if path.sub.is_none()
                    && path.name.eq_ignore_ascii_case("userName")
                    && path
                        .urn
                        .as_deref()
                        .is_none_or(|u| u.eq_ignore_ascii_case(schema::USER_SCHEMA)) =>
            {
                self.store
                    .scim_user_by_name(team_id, &name.to_lowercase())
                    .await?
                    .into_iter()
                    .collect()
            }
            _ => self.store.scim_users(team_id).await?,
        };
        let mut rendered = self.render_users(team, records, location).await?;
        if let Some(filter) = filter {
            rendered.retain(|user| matches(filter, &user.resource));
        }
        Ok(rendered)
    }

    pub async fn scim_create_user(
        &self,
        team: &TeamRecord,
        body: &Value,
        location: &Location,
    ) -> ScimResult<Versioned> {
        let (stored, active) = validated(body)?;
        let team_id = team.access.team_id;
        let key = user_name_key(&stored);
        if self.store.scim_user_by_name(team_id, &key).await?.is_some() {
            return Err(
                ScimError::uniqueness("userName is already taken in this directory").into(),
            );
        }
        let appid = self.scim_app(team).await?;
        let scim_id = uuid::Uuid::new_v4().to_string();
        let nickname = nickname_of(&stored);
        let now = unix_now();
        let user = self
            .store
            .register_user(&appid, &scim_id, &nickname, "", now)
            .await?;
        let record = ScimUserRecord {
            user_id: user.user_id,
            scim_id,
            user_name_key: key,
            external_id: stored
                .get("externalId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            active,
            resource: Value::Object(stored).to_string(),
            created_at: now,
            updated_at: now,
        };
        self.write_user(team, &record, location).await
    }

    /// Store a user's new state, then make its membership follow `active`. The SCIM row is
    /// the state asked for and is written first: if the directory write fails, the next
    /// write of the user (a provider retries) brings the directory to it.
    async fn write_user(
        &self,
        team: &TeamRecord,
        record: &ScimUserRecord,
        location: &Location,
    ) -> ScimResult<Versioned> {
        if !self
            .store
            .put_scim_user(team.access.team_id, record)
            .await?
        {
            return Err(
                ScimError::uniqueness("userName is already taken in this directory").into(),
            );
        }
        let stored = stored_of(record)?;
        let user_id = record.user_id;
        let active = record.active;
        let nickname = nickname_of(&stored);
        self.directories
            .write(&*self.store, team, Origin::scim(), |d| {
                let placement = d.placement(user_id);
                let change = match (active, placement) {
                    (true, placement) => Change::PutMember {
                        member: MemberRow {
                            user_id,
                            role: placement.map_or(Role::Member, |p| p.role),
                            nickname: nickname.clone(),
                            avatar: Avatar::default(),
                            source: Source::Sync,
                        },
                        groups: placement
                            .map(|p| p.groups.iter().map(|g| GroupRef::Existing(*g)).collect())
                            .unwrap_or_default(),
                    },
                    (false, Some(_)) => Change::RemoveMember(user_id),
                    (false, None) => return Ok((Vec::new(), ())),
                };
                Ok((vec![change], ()))
            })
            .await?;
        self.scim_get_user(team, &record.scim_id, location).await
    }

    async fn replace_user(
        &self,
        team: &TeamRecord,
        current: ScimUserRecord,
        stored: Map<String, Value>,
        active: bool,
        location: &Location,
    ) -> ScimResult<Versioned> {
        let record = ScimUserRecord {
            user_name_key: user_name_key(&stored),
            external_id: stored
                .get("externalId")
                .and_then(Value::as_str)
                .map(str::to_owned),
            active,
            resource: Value::Object(stored).to_string(),
            updated_at: unix_now(),
            ..current
        };
        self.write_user(team, &record, location).await
    }

    pub async fn scim_replace_user(
        &self,
        team: &TeamRecord,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        location: &Location,
    ) -> ScimResult<Versioned> {
        let current = self.scim_user_record(team, id).await?;
        check_version(&self.scim_get_user(team, id, location).await?, if_match)?;
        let (stored, active) = validated(body)?;
        self.replace_user(team, current, stored, active, location)
            .await
    }

    pub async fn scim_patch_user(
        &self,
        team: &TeamRecord,
        id: &str,
        operations: &[Operation],
        if_match: Option<&str>,
        location: &Location,
    ) -> ScimResult<Versioned> {
        let current = self.scim_user_record(team, id).await?;
        let rendered = self.scim_get_user(team, id, location).await?;
        check_version(&rendered, if_match)?;
        let mut resource = rendered.resource;
        patch::apply(&mut resource, operations, &[ENTERPRISE_SCHEMA])?;
        let (stored, active) = validated(&Value::Object(resource))?;
        self.replace_user(team, current, stored, active, location)
            .await
    }

    /// Take the user out of the directory and forget its SCIM attributes (the user itself
    /// stays registered, as users do).
    pub async fn scim_delete_user(
        &self,
        team: &TeamRecord,
        id: &str,
        if_match: Option<&str>,
        location: &Location,
    ) -> ScimResult<()> {
        let current = self.scim_user_record(team, id).await?;
        check_version(&self.scim_get_user(team, id, location).await?, if_match)?;
        let user_id: UserId = current.user_id;
        self.directories
            .write(&*self.store, team, Origin::scim(), |d| {
                Ok(match d.placement(user_id) {
                    Some(_) => (vec![Change::RemoveMember(user_id)], ()),
                    None => (Vec::new(), ()),
                })
            })
            .await?;
        self.store
            .delete_scim_user(team.access.team_id, user_id)
            .await?;
        Ok(())
    }
}
