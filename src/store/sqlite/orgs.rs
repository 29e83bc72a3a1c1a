//! Orgs on SQLite: the store numbers them, from the first id the reference service hands out
//! (60000000001); creations need no lock of their own, the writing connection being the only
//! one.

use super::SqliteStore;
use crate::store::backend::BackendOrgs;

impl BackendOrgs for SqliteStore {
    const LOCK_CREATOR: Option<&'static str> = None;
    const INSERT_ORG: &'static str = "INSERT INTO orgs (id, name, plan, admin_seats, \
         creator_user_id, creator_appid, created_at) \
         VALUES ((SELECT COALESCE(MAX(id) + 1, 60000000001) FROM orgs), $1, $2, $3, $4, $5, $6) \
         RETURNING id";
}
