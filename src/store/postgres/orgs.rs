//! Orgs on PostgreSQL: numbered by the identity column; a creation locks the creating user's
//! row (`FOR NO KEY UPDATE`) before counting the orgs that user created, so two concurrent
//! creations by one user, in any processes, cannot both pass the limit. `NO KEY UPDATE` rather
//! than `UPDATE` because it still excludes a second creator but does not block the key checks
//! (`FOR KEY SHARE`) of writes that name that user.

use super::PostgresStore;
use crate::store::backend::BackendOrgs;

impl BackendOrgs for PostgresStore {
    const LOCK_CREATOR: Option<&'static str> =
        Some("SELECT id FROM users WHERE id = $1 FOR NO KEY UPDATE");
    const INSERT_ORG: &'static str = "INSERT INTO orgs (name, plan, admin_seats, \
         creator_user_id, creator_appid, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
}
