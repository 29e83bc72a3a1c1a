//! Row mappers shared by both backends: what a stored row means in domain terms.
//!
//! Rows whose columns map one to one onto a record derive `sqlx::FromRow` on the record itself
//! (`AppRecord`, `TokenRecord`, `UserRecord`, `MemberProfile`); the rows here need a conversion
//! (a plan name, a role or source code, a nested [`OrgAccess`]). Codes this build does not know
//! mean the database was changed by hand: they are [`StoreError::Inconsistent`].

use super::{
    DanglingKind, DanglingReferences, MemberDetails, OrgRecord, StoreError, StoreResult, TeamRecord,
};
use crate::domain::access::{OrgAccess, Plan};
use crate::domain::directory::{DirectoryBuilder, Group};
use crate::domain::values::{
    Avatar, GroupId, GroupName, Nickname, OrgId, RemoteId, Role, Source, TeamId, UserId,
};

/// The name and avatar a [`MemberProfile`](super::MemberProfile) shows, from a member row `m` and
/// its user's row `u`: the directory-level ones, or the user's own where those are empty.
macro_rules! profile_columns {
    () => {
        "CASE WHEN m.nickname <> '' THEN m.nickname ELSE u.nickname END AS name, \
         CASE WHEN m.avatar <> '' THEN m.avatar ELSE u.avatar END AS avatar"
    };
}

pub(crate) use profile_columns;

/// A stored role code.
pub(crate) fn role_of(raw: i64) -> StoreResult<Role> {
    Role::from_code(raw).ok_or_else(|| StoreError::Inconsistent(format!("unknown role {raw}")))
}

fn plan_of(raw: &str) -> StoreResult<Plan> {
    Plan::parse(raw).ok_or_else(|| StoreError::Inconsistent(format!("unknown plan {raw:?}")))
}

/// The access facts of an org, read with its team.
#[derive(sqlx::FromRow)]
pub(crate) struct AccessRow {
    org_id: OrgId,
    team_id: TeamId,
    plan: String,
    creator_appid: Option<String>,
}

impl TryFrom<AccessRow> for OrgAccess {
    type Error = StoreError;

    fn try_from(row: AccessRow) -> StoreResult<OrgAccess> {
        Ok(OrgAccess {
            org_id: row.org_id,
            team_id: row.team_id,
            plan: plan_of(&row.plan)?,
            creator_appid: row.creator_appid,
        })
    }
}

/// A team with its org (`teams t JOIN orgs o`).
#[derive(sqlx::FromRow)]
pub(crate) struct TeamRow {
    #[sqlx(flatten)]
    access: AccessRow,
    version: i64,
    name: String,
    admin_seats: i64,
}

impl TryFrom<TeamRow> for TeamRecord {
    type Error = StoreError;

    fn try_from(row: TeamRow) -> StoreResult<TeamRecord> {
        Ok(TeamRecord {
            access: row.access.try_into()?,
            name: row.name,
            admin_seats: row.admin_seats,
            version: row.version,
        })
    }
}

/// An org with its team and its creator's profile.
#[derive(sqlx::FromRow)]
pub(crate) struct OrgRow {
    #[sqlx(flatten)]
    access: AccessRow,
    name: String,
    phone: String,
    creator_user_id: Option<UserId>,
    creator_name: String,
    creator_avatar: String,
}

impl TryFrom<OrgRow> for OrgRecord {
    type Error = StoreError;

    fn try_from(row: OrgRow) -> StoreResult<OrgRecord> {
        Ok(OrgRecord {
            access: row.access.try_into()?,
            name: row.name,
            phone: row.phone,
            creator_id: row.creator_user_id,
            creator_name: row.creator_name,
            creator_avatar: row.creator_avatar,
        })
    }
}

/// A member's role and directory-level names.
#[derive(sqlx::FromRow)]
pub(crate) struct MemberDetailsRow {
    role: i64,
    nickname: Nickname,
    avatar: Avatar,
}

impl TryFrom<MemberDetailsRow> for MemberDetails {
    type Error = StoreError;

    fn try_from(row: MemberDetailsRow) -> StoreResult<MemberDetails> {
        Ok(MemberDetails {
            role: role_of(row.role)?,
            nickname: row.nickname,
            avatar: row.avatar,
        })
    }
}

/// A group row.
#[derive(sqlx::FromRow)]
pub(crate) struct GroupRow {
    id: GroupId,
    parent_id: GroupId,
    source: i64,
    remote_id: RemoteId,
    name: GroupName,
    sort_order: i64,
    is_valid: bool,
    created_at: i64,
    upd_at: i64,
}

impl From<GroupRow> for Group {
    fn from(row: GroupRow) -> Group {
        Group {
            id: row.id,
            parent_id: row.parent_id,
            source: Source::from_code(row.source),
            remote_id: row.remote_id,
            name: row.name,
            order: row.sort_order,
            is_valid: row.is_valid,
            created_at: row.created_at,
            upd_at: row.upd_at,
        }
    }
}

/// A row of the dangling-references query: the kind's name in the query, the team, the count.
#[derive(sqlx::FromRow)]
pub(crate) struct DanglingRow {
    problem: String,
    team_id: Option<TeamId>,
    n: i64,
}

impl TryFrom<DanglingRow> for DanglingReferences {
    type Error = StoreError;

    fn try_from(row: DanglingRow) -> StoreResult<DanglingReferences> {
        let kind = match row.problem.as_str() {
            "membership_of_non_member" => DanglingKind::MembershipOfNonMember,
            "membership_outside_team" => DanglingKind::MembershipOutsideTeam,
            "member_not_user" => DanglingKind::MemberNotUser,
            "member_of_missing_team" => DanglingKind::MemberOfMissingTeam,
            "openid_of_missing_user" => DanglingKind::OpenidOfMissingUser,
            "openid_of_missing_app" => DanglingKind::OpenidOfMissingApp,
            other => {
                return Err(StoreError::Inconsistent(format!(
                    "unknown reference problem {other:?}"
                )));
            }
        };
        Ok(DanglingReferences {
            kind,
            team_id: row.team_id,
            count: row.n,
        })
    }
}

/// The builder of `team`'s directory, of the size `(groups, members)` the shared size query
/// read, so that it sizes its maps once.
pub(crate) fn directory_builder(
    team: TeamRecord,
    (groups, members): (i64, i64),
) -> DirectoryBuilder {
    DirectoryBuilder::new(
        team.name,
        team.admin_seats,
        team.version,
        usize::try_from(groups).unwrap_or_default(),
        usize::try_from(members).unwrap_or_default(),
    )
}
