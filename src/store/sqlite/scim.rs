//! SCIM writes on SQLite: the statements of a [`ScimWrite`] that comes with a directory change,
//! sent in the change's first query, between its savepoint and its version check
//! ([`BackendDirectory::start_scim_apply`](crate::store::backend::BackendDirectory::start_scim_apply)).
//! Each query is a round trip to the driver's thread and a team's writes wait for each other,
//! so a user created is two: its user, registration, SCIM row and the version check in one, its
//! member row and event in the next.
//!
//! The new user's id is learned the way the version check learns the next group id: the
//! writing connection is the only one, and users are numbered after the last, so the user just
//! inserted is the one of the highest id. The parameters are numbered from `$4` (`$1` is the
//! team id, `$2` and `$3` are the version check's).

use sqlx::Sqlite;
use sqlx::query::QueryAs;

use super::users::{FIRST_RESPONDENT_ID, FIRST_USER_ID, insert_user};
use crate::store::scim::{ScimUserRecord, ScimWrite, put_scim_user};

/// The id of the user a [`ScimWrite::Create`] inserted, in a statement after it.
const NEW_USER: &str = "(SELECT MAX(id) FROM users)";

/// The statements of `write`, each ending with `;`, and what the version check returns after
/// its own columns: the id of the user `write` registered, or `NULL`.
pub(super) fn statements(write: &ScimWrite) -> (&'static str, &'static str) {
    match write {
        ScimWrite::Create { .. } => (
            concat!(
                insert_user!("$4", "$5", "$6", "''", "$7"),
                ";\n",
                // A directory's SCIM app is made with its first token: without one, the
                // registration fails (`appid` is `NOT NULL`).
                "INSERT INTO app_users (appid, openid, user_id) VALUES \
                 ((SELECT appid FROM scim_apps WHERE team_id = $1), $8, \
                 (SELECT MAX(id) FROM users));\n",
                put_scim_user!(
                    "($1, (SELECT MAX(id) FROM users), $8, $9, $10, $11, $12, $13, $14)"
                ),
                ";\n"
            ),
            NEW_USER,
        ),
        ScimWrite::Put(_) => (
            concat!(
                put_scim_user!("($1, $4, $5, $6, $7, $8, $9, $10, $11)"),
                ";\n"
            ),
            "NULL",
        ),
        ScimWrite::Delete(_) => (
            "DELETE FROM scim_users WHERE team_id = $1 AND user_id = $4;\n",
            "NULL",
        ),
    }
}

/// `query` with the parameters of [`statements`] of `write` bound after the first three.
pub(super) fn bind<'q, O>(
    query: QueryAs<'q, Sqlite, O, <Sqlite as sqlx::Database>::Arguments>,
    write: &ScimWrite,
    now: i64,
) -> QueryAs<'q, Sqlite, O, <Sqlite as sqlx::Database>::Arguments> {
    match write {
        ScimWrite::Create { nickname, record } => bind_record(
            query
                .bind(FIRST_USER_ID)
                .bind(FIRST_RESPONDENT_ID)
                .bind(nickname.as_str().to_owned())
                .bind(now),
            record,
        ),
        ScimWrite::Put(record) => bind_record(query.bind(record.user_id), record),
        ScimWrite::Delete(user_id) => query.bind(*user_id),
    }
}

/// `query` with the columns of a SCIM row after its user id bound.
fn bind_record<'q, O>(
    query: QueryAs<'q, Sqlite, O, <Sqlite as sqlx::Database>::Arguments>,
    record: &ScimUserRecord,
) -> QueryAs<'q, Sqlite, O, <Sqlite as sqlx::Database>::Arguments> {
    query
        .bind(record.scim_id.clone())
        .bind(record.user_name_key.clone())
        .bind(record.external_id.clone())
        .bind(record.active)
        .bind(record.resource.clone())
        .bind(record.created_at)
        .bind(record.updated_at)
}
