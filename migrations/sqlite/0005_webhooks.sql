-- Webhook subscriptions (§11). Each row carries its own cursor into the team's events
-- (`acked_seq`, the last event the receiver acknowledged), its retry state (`attempts`,
-- `failing_since`, `next_attempt_at`, `last_error`) and a lease (`lease_owner`,
-- `lease_expires_at`): the delivery worker holding an unexpired lease is the only one that
-- may deliver for it. Times in unix milliseconds except `created_at`/`updated_at` (seconds).
CREATE TABLE webhooks (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id          INTEGER NOT NULL REFERENCES teams(id),
    url              TEXT    NOT NULL,
    secret           TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    listened         TEXT    NOT NULL,
    acked_seq        INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    failing_since    INTEGER,
    next_attempt_at  INTEGER NOT NULL DEFAULT 0,
    last_error       TEXT,
    lease_owner      TEXT,
    lease_expires_at INTEGER NOT NULL DEFAULT 0,
    deliveries       INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX webhooks_team ON webhooks (team_id);
CREATE INDEX webhooks_due ON webhooks (state, next_attempt_at);

-- The most recent delivery attempts of each subscription, numbered per subscription
-- (`webhooks.deliveries` is the last number); older ones are removed as new ones are written.
CREATE TABLE webhook_deliveries (
    webhook_id  INTEGER NOT NULL,
    number      INTEGER NOT NULL,
    delivery_id TEXT    NOT NULL,
    time        INTEGER NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    events      INTEGER NOT NULL,
    status      INTEGER,
    latency_ms  INTEGER NOT NULL,
    error       TEXT,
    PRIMARY KEY (webhook_id, number)
) WITHOUT ROWID;
