//! The statements a SQLite directory write is made of, written into the write's held query
//! ([`super::directory::SqliteWriter`]): each pushes one statement with positional (`?`)
//! parameters and without its `;`.

use sqlx::{QueryBuilder, Sqlite};

use crate::domain::directory::{Group, MemberRow};
use crate::domain::values::{GroupId, TeamId};
use crate::store::backend::WriteStart;

/// Push the write's savepoint and the statement that checks and bumps its team's version and
/// takes its event numbers (its `;` not included): the transaction is this process's only
/// writer, so the team cannot change before the commit.
pub(super) fn push_bump(query: &mut QueryBuilder<Sqlite>, start: &WriteStart) {
    query
        .push(start.savepoint)
        .push(";\nUPDATE teams SET version = version + 1, event_seq = event_seq + ")
        .push_bind(start.events as i64)
        .push(" WHERE id = ")
        .push_bind(start.team_id)
        .push(" AND version = ")
        .push_bind(start.expected);
}

/// Push the statement that inserts `members` or overwrites them as `overwrite` says
/// ([`rewrite_member`](crate::store::shared::rewrite_member) or
/// [`STEP_MEMBER`](crate::store::shared::STEP_MEMBER); its `;` not included).
pub(super) fn upsert_members<'m>(
    query: &mut QueryBuilder<Sqlite>,
    team_id: TeamId,
    now: i64,
    members: impl IntoIterator<Item = &'m MemberRow>,
    overwrite: &'static str,
) {
    query
        .push(
            "INSERT INTO members (team_id, user_id, role, nickname, avatar, source, \
             created_at, upd_at) ",
        )
        .push_values(members, |mut row, member| {
            row.push_bind(team_id)
                .push_bind(member.user_id)
                .push_bind(member.role.code())
                .push_bind(member.nickname.as_str().to_owned())
                .push_bind(member.avatar.as_str().to_owned())
                .push_bind(member.source.code())
                .push_bind(now)
                .push_bind(now);
        })
        .push(overwrite);
}

/// Push an insert (`verb`: `INSERT` or `INSERT OR REPLACE`) of whole group rows, each given
/// with its id, its parent's id and whether it is valid (its `;` not included).
pub(super) fn push_groups<'g>(
    query: &mut QueryBuilder<Sqlite>,
    verb: &str,
    team_id: TeamId,
    rows: impl IntoIterator<Item = (GroupId, GroupId, &'g Group, bool)>,
) {
    query
        .push(verb)
        .push(
            " INTO groups (id, team_id, parent_id, source, remote_id, name, sort_order, \
             is_valid, created_at, upd_at) ",
        )
        .push_values(rows, |mut row, (id, parent_id, group, valid)| {
            row.push_bind(id)
                .push_bind(team_id)
                .push_bind(parent_id)
                .push_bind(group.source.code())
                .push_bind(group.remote_id.as_str().to_owned())
                .push_bind(group.name.as_str().to_owned())
                .push_bind(group.order)
                .push_bind(valid)
                .push_bind(group.created_at)
                .push_bind(group.upd_at);
        });
}

/// Push the statement that adds the memberships `joins` (JSON pairs of user and group) where
/// missing (its `;` not included): one primary-key lookup each, whatever the member's other
/// groups.
pub(super) fn push_joins(query: &mut QueryBuilder<Sqlite>, team_id: TeamId, joins: String) {
    query
        .push("INSERT INTO memberships (team_id, user_id, group_id) SELECT ")
        .push_bind(team_id)
        .push(", value ->> 0, value ->> 1 FROM json_each(")
        .push_bind(joins)
        .push(") WHERE true ON CONFLICT DO NOTHING");
}

/// Push the statement that lists `users` (a JSON array) in a staging file's `table`
/// ([`super::staging`]; its `;` not included).
pub(super) fn push_listed(
    query: &mut QueryBuilder<Sqlite>,
    table: &str,
    team_id: TeamId,
    users: String,
) {
    query
        .push("INSERT INTO ")
        .push(table)
        .push(" (team_id, user_id) SELECT ")
        .push_bind(team_id)
        .push(", value FROM json_each(")
        .push_bind(users)
        .push(")");
}
