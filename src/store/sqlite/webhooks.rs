//! [`WebhookStore`](crate::store::webhooks::WebhookStore) on SQLite: the one writing connection
//! already serializes creations (the cap needs no lock) and claims (a claim is one `UPDATE` in a
//! write transaction, so two workers never lease the same subscription).

crate::store::webhooks::impl_webhook_store!(super::SqliteStore, None, "");
