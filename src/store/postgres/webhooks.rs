//! [`WebhookStore`](crate::store::webhooks::WebhookStore) on PostgreSQL: a creation locks the
//! team's row, so that concurrent creations from any process count each other against the cap;
//! a claim locks the subscriptions it leases and skips those another process is claiming
//! (`FOR UPDATE SKIP LOCKED`), so that workers in several processes never wait for each other
//! nor lease the same subscription.

crate::store::webhooks::impl_webhook_store!(
    super::PostgresStore,
    Some("SELECT id FROM teams WHERE id = $1 FOR NO KEY UPDATE"),
    " FOR UPDATE OF w SKIP LOCKED"
);
