//! HTTP integration tests of contactsd against `../shared/spec/API.md`.
//!
//! Every test starts the real router on `127.0.0.1:0` over a fresh database (SQLite by default,
//! a fresh PostgreSQL database when `CONTACTSD_TEST_DATABASE_URL` is set) and talks to it over
//! HTTP only; what a test checks is what a client sees: the status, the envelope, the data, and
//! what reading it back afterwards shows.

mod abuse;
mod clients;
mod concurrency;
mod connections;
mod events;
mod foundation;
mod groups;
mod groups_writes;
mod helpers;
mod hostile_input;
mod member_storage;
mod members;
mod members_list;
mod metrics;
mod openapi;
mod processes;
mod quotas;
mod scim;
mod scim_large;
mod scim_members;
mod scim_store;
mod store;
mod store_directory;
mod store_events;
mod store_staging;
mod sync;
mod sync_limits;
mod tenant_isolation;
mod tokens;
mod users_orgs;
mod webhooks;
