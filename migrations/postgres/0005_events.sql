-- The change feed (§11): one row per event, numbered per team without gaps. `event_seq` is the
-- last number handed out (bumped under the team's row lock, in the transaction that writes the
-- change and its events); `events_pruned_through` is the last number removed by retention, so
-- that a cursor at or past it is known to be complete and one before it answers
-- `events_expired`. No foreign key, like the other bulk tables: a first sync inserts a row per
-- object.
ALTER TABLE teams ADD COLUMN event_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE teams ADD COLUMN events_pruned_through BIGINT NOT NULL DEFAULT 0;

CREATE TABLE events (
    team_id     BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    time        BIGINT NOT NULL,
    type        TEXT   NOT NULL,
    actor_kind  TEXT   NOT NULL,
    appid       TEXT,
    request_id  TEXT,
    object_kind TEXT   NOT NULL,
    object_id   BIGINT,
    remote_id   TEXT,
    before      TEXT,
    after       TEXT,
    PRIMARY KEY (team_id, seq)
);
