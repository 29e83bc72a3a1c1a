-- The change feed (§11): one row per event, numbered per team without gaps. `event_seq` is the
-- last number handed out (bumped in the transaction that writes the change and its events);
-- `events_pruned_through` is the last number removed by retention, so that a cursor at or past
-- it is known to be complete and one before it answers `events_expired`.
ALTER TABLE teams ADD COLUMN event_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE teams ADD COLUMN events_pruned_through INTEGER NOT NULL DEFAULT 0;

CREATE TABLE events (
    team_id     INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    time        INTEGER NOT NULL,
    type        TEXT    NOT NULL,
    actor_kind  TEXT    NOT NULL,
    appid       TEXT,
    request_id  TEXT,
    object_kind TEXT    NOT NULL,
    object_id   INTEGER,
    remote_id   TEXT,
    before      TEXT,
    after       TEXT,
    PRIMARY KEY (team_id, seq)
) WITHOUT ROWID;
