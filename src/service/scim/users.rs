//! SCIM Users: users of the directory's SCIM app, members of the directory while active.

use serde_json::{Map, Value};

use super::render::{self, Location};
use super::{REWRITE_ATTEMPTS, ScimFailure, ScimResult, Target, Versioned, check_version, patched};
use crate::domain::directory::{Change, Directory, Kept, MemberRow, REGISTERED_USER};
use crate::domain::scim::ScimError;
use crate::domain::scim::filter::{Filter, equality, matches};
use crate::domain::scim::patch::Operation;
use crate::domain::scim::schema::{self, ENTERPRISE_SCHEMA};
use crate::domain::values::{Avatar, Nickname, Role, Source, UserId};
use crate::service::{Service, ServiceError, unix_now};
use crate::store::scim::{ScimUserRecord, ScimWrite};
use crate::store::{StoreError, TeamRecord};

fn stored_of(record: &ScimUserRecord) -> ScimResult<Map<String, Value>> {
    match serde_json::from_str(&record.resource) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ScimFailure::Service(
            StoreError::Inconsistent("a stored SCIM user is not a JSON object".to_owned()).into(),
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

/// Whether `written` was refused because the user changed since it was read (the request is
/// then made again on the user as it is).
fn changed<T>(written: &ScimResult<T>) -> bool {
    matches!(
        written,
        Err(ScimFailure::Service(ServiceError::Store(
            StoreError::ScimUserChanged
        )))
    )
}

/// A user as read by a write that carried an `If-Match`, with the version the header matched.
/// The version covers the user's groups, which other writes change: the store's check of the
/// user's row does not see them, so the write's decision renders the user again from the
/// directory it is decided on ([`still_matched`]).
struct Matched {
    record: ScimUserRecord,
    stored: Map<String, Value>,
    version: String,
}

impl Matched {
    /// `None` for a write without `If-Match`, which is not conditional.
    fn of(
        target: Target<'_>,
        record: &ScimUserRecord,
        rendered: &Versioned,
    ) -> ScimResult<Option<Matched>> {
        if target.if_match.is_none() {
            return Ok(None);
        }
        Ok(Some(Matched {
            record: record.clone(),
            stored: stored_of(record)?,
            version: rendered.version.clone(),
        }))
    }
}

/// Refuse, as changed by another write, a conditional write decided on a directory in which
/// the user no longer has the version its `If-Match` matched (the request is then made again,
/// and the header checked against the user as it is).
fn still_matched(
    matched: Option<&Matched>,
    directory: &Directory,
    location: &Location,
) -> Result<(), ServiceError> {
    match matched {
        Some(m) if render::user(&m.record, &m.stored, directory, location).version != m.version => {
            Err(StoreError::ScimUserChanged.into())
        }
        _ => Ok(()),
    }
}

/// What a client sent, validated, and whether the user is active.
fn validated(body: &Value) -> ScimResult<(Map<String, Value>, bool)> {
    let stored = schema::normalize(body, &schema::USER)?;
    // An absent `active` is not a deactivation.
    let active = stored.get("active") != Some(&Value::Bool(false));
    Ok((stored, active))
}

/// The row of a user whose attributes are `stored`, written over the row at `row_version` (0 for
/// a new one).
fn record_of(
    user_id: UserId,
    scim_id: String,
    stored: &Map<String, Value>,
    active: bool,
    created_at: i64,
    updated_at: i64,
    row_version: i64,
) -> ScimUserRecord {
    let text = |key: &str| stored.get(key).and_then(Value::as_str);
    ScimUserRecord {
        user_id,
        scim_id,
        user_name_key: text("userName").unwrap_or_default().to_lowercase(),
        external_id: text("externalId").map(str::to_owned),
        active,
        resource: Value::Object(stored.clone()).to_string(),
        created_at,
        updated_at,
        row_version,
    }
}

/// The changes that make `user_id` a member named `nickname` while `active` (in the groups it
/// is in, with the avatar it has: SCIM does not set one), and no member otherwise.
fn membership(d: &Directory, user_id: UserId, active: bool, nickname: &Nickname) -> Vec<Change> {
    let placement = d.placement(user_id);
    match (active, placement) {
        (true, placement) => vec![Change::PutMember {
            member: MemberRow {
                user_id,
                role: placement.map_or(Role::Member, |p| p.role),
                nickname: nickname.clone(),
                avatar: Avatar::default(),
                source: Source::Sync,
            },
            groups: None,
            kept: Kept {
                nickname: false,
                avatar: true,
            },
        }],
        (false, Some(_)) => vec![Change::RemoveMember(user_id)],
        (false, None) => Vec::new(),
    }
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

    /// One user as answered, rendered from `record` and its attributes `stored`.
    async fn render_user(
        &self,
        team: &TeamRecord,
        record: &ScimUserRecord,
        stored: &Map<String, Value>,
        location: &Location,
    ) -> ScimResult<Versioned> {
        Ok(self
            .directories
            .read(&*self.store, team, |d| {
                Ok(render::user(record, stored, d, location))
            })
            .await?)
    }

    /// The user `target` names, as stored and as answered, refused unless its `If-Match` names
    /// the user's version.
    async fn current_user(&self, target: Target<'_>) -> ScimResult<(ScimUserRecord, Versioned)> {
        let Target {
            team,
            id,
            if_match,
            location,
        } = target;
        let record = self
            .store
            .scim_user(team.access.team_id, id)
            .await?
            .ok_or_else(|| ScimError::not_found(format!("no user with id {id}")))?;
        let rendered = self
            .render_user(team, &record, &stored_of(&record)?, location)
            .await?;
        check_version(&rendered, if_match)?;
        Ok((record, rendered))
    }

    pub async fn scim_get_user(
        &self,
        team: &TeamRecord,
        id: &str,
        location: &Location,
    ) -> ScimResult<Versioned> {
        let target = Target {
            team,
            id,
            if_match: None,
            location,
        };
        let (_, rendered) = self.current_user(target).await?;
        Ok(rendered)
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

    /// Register the user, store its SCIM row and make it a member while active, in one write
    /// (refused as a whole when the `userName` is taken): the member row names the user the
    /// write registers ([`REGISTERED_USER`]), which the store gives its id.
    pub async fn scim_create_user(
        &self,
        team: &TeamRecord,
        body: &Value,
        location: &Location,
    ) -> ScimResult<Versioned> {
        let (stored, active) = validated(body)?;
        let now = unix_now();
        let scim_id = uuid::Uuid::new_v4().to_string();
        let record = record_of(REGISTERED_USER, scim_id, &stored, active, now, now, 0);
        let nickname = nickname_of(&stored);
        let create = ScimWrite::Create {
            nickname: nickname.clone(),
            record: record.clone(),
        };
        let ((), applied) = self
            .directories
            .write_scim(&*self.store, team, create, |d| {
                Ok((membership(d, REGISTERED_USER, active, &nickname), ()))
            })
            .await?;
        let user_id = applied.registered.ok_or_else(|| {
            StoreError::Inconsistent("a SCIM user was created without a user".to_owned())
        })?;
        let record = ScimUserRecord { user_id, ..record };
        self.render_user(team, &record, &stored, location).await
    }

    /// Store a user's new state and make its membership follow `active`, in one write, refused
    /// as changed unless the user still has the version its `If-Match` `matched`.
    async fn replace_user(
        &self,
        target: Target<'_>,
        current: ScimUserRecord,
        stored: Map<String, Value>,
        active: bool,
        matched: Option<&Matched>,
    ) -> ScimResult<Versioned> {
        let Target { team, location, .. } = target;
        let record = record_of(
            current.user_id,
            current.scim_id,
            &stored,
            active,
            current.created_at,
            unix_now(),
            current.row_version,
        );
        let user_id = record.user_id;
        let nickname = nickname_of(&stored);
        self.directories
            .write_scim(&*self.store, team, ScimWrite::Put(record.clone()), |d| {
                still_matched(matched, d, location)?;
                Ok((membership(d, user_id, active, &nickname), ()))
            })
            .await?;
        self.render_user(team, &record, &stored, location).await
    }

    pub async fn scim_replace_user(
        &self,
        target: Target<'_>,
        body: &Value,
    ) -> ScimResult<Versioned> {
        let (stored, active) = validated(body)?;
        self.rewrite_user(target, |_| Ok((stored.clone(), active)))
            .await
    }

    pub async fn scim_patch_user(
        &self,
        target: Target<'_>,
        operations: &[Operation],
    ) -> ScimResult<Versioned> {
        self.rewrite_user(target, |rendered| {
            validated(&patched(rendered, operations, ENTERPRISE_SCHEMA)?)
        })
        .await
    }

    /// Write the user `target` names whole, as `new` makes it from the user as answered, over
    /// the row it was read from: should another write of the user (or its deletion) come
    /// between the read and the write, the write is refused by the store and made again from
    /// the user as it then is (its `If-Match` checked again), so that no write undoes another.
    async fn rewrite_user(
        &self,
        target: Target<'_>,
        new: impl Fn(Versioned) -> ScimResult<(Map<String, Value>, bool)>,
    ) -> ScimResult<Versioned> {
        for _ in 0..REWRITE_ATTEMPTS {
            let (current, rendered) = self.current_user(target).await?;
            let matched = Matched::of(target, &current, &rendered)?;
            let (stored, active) = new(rendered)?;
            let written = self
                .replace_user(target, current, stored, active, matched.as_ref())
                .await;
            if !changed(&written) {
                return written;
            }
        }
        Err(ServiceError::Busy.into())
    }

    /// Take the user out of the directory and forget its SCIM attributes, in one write (the
    /// user itself stays registered, as users do); made again, as a PUT is, should another
    /// write of the user come between its read and its write.
    pub async fn scim_delete_user(&self, target: Target<'_>) -> ScimResult<()> {
        for _ in 0..REWRITE_ATTEMPTS {
            let (current, rendered) = self.current_user(target).await?;
            let matched = Matched::of(target, &current, &rendered)?;
            let user_id = current.user_id;
            let delete = ScimWrite::Delete {
                user_id,
                row_version: current.row_version,
            };
            let deleted = self
                .directories
                .write_scim(&*self.store, target.team, delete, |d| {
                    still_matched(matched.as_ref(), d, target.location)?;
                    Ok((membership(d, user_id, false, &Nickname::default()), ()))
                })
                .await
                .map_err(ScimFailure::from);
            if !changed(&deleted) {
                return deleted.map(|_| ());
            }
        }
        Err(ServiceError::Busy.into())
    }
}
