//! SCIM writes on SQLite: the statements of a [`ScimWrite`] that comes with a directory change,
//! held by the change's writer after its version check and sent with the change's rows
//! ([`SqliteWriter::hold_scim`](super::directory::SqliteWriter::hold_scim)). Each query is a
//! round trip to the driver's thread and a team's writes wait for each other, so a SCIM write
//! adds no query of its own: a user created with its membership is one round trip when the
//! batch already wrote the team, two otherwise (the version check asked, then the rest).
//!
//! The new user's id is the one the version check learned (the writing connection is the only
//! one, and users are numbered after the last), given explicitly: a wrong guess would be a
//! refused insert, never a row under another user's id.

use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use super::users::next_respondent_id;
use crate::domain::values::{TeamId, UserId};
use crate::store::scim::ScimWrite;

/// Push the statements of `write` (the last without its `;`), with positional parameters only;
/// a created user gets the id `new_user`.
pub(super) fn push(
    query: &mut QueryBuilder<Sqlite>,
    team_id: TeamId,
    write: &ScimWrite,
    now: i64,
    new_user: UserId,
) {
    match write {
        ScimWrite::Create { nickname, record } => {
            query
                .push(
                    "INSERT INTO users (id, respondent_id, nickname, avatar, created_at) VALUES (",
                )
                .push_bind(new_user)
                .push(concat!(", ", next_respondent_id!(), ", "))
                .push_bind(nickname.as_str().to_owned())
                .push(", '', ")
                .push_bind(now)
                // A directory's SCIM app is made with its first token: without one, the
                // registration fails (`appid` is `NOT NULL`).
                .push(
                    ");\nINSERT INTO app_users (appid, openid, user_id) VALUES \
                     ((SELECT appid FROM scim_apps WHERE team_id = ",
                )
                .push_bind(team_id)
                .push("), ")
                .push_bind(record.scim_id.clone())
                .push(", ")
                .push_bind(new_user)
                .push(");\n");
            SqliteStore::push_scim_row(query, team_id, new_user, record);
        }
        ScimWrite::Put(record) => {
            SqliteStore::push_scim_row_current(query, team_id, record.user_id, record.row_version);
            query.push(";\n");
            SqliteStore::push_scim_row(query, team_id, record.user_id, record)
        }
        ScimWrite::Delete {
            user_id,
            row_version,
        } => {
            SqliteStore::push_scim_row_current(query, team_id, *user_id, *row_version);
            query.push(";\n");
            SqliteStore::push_scim_delete(query, team_id, *user_id);
        }
    }
}
