-- What the events of one write share (its time and its actor) is stored once, in a row that
-- covers the team's events from `first_seq` up to the next row's: a sync's million events no
-- longer each carry the same appid and request id. A write adds a row for each statement of
-- its events (one per 50,000 on PostgreSQL). Retention removes the rows whose events are all
-- gone. No foreign key, like `events`.
CREATE TABLE event_writes (
    team_id    BIGINT NOT NULL,
    first_seq  BIGINT NOT NULL,
    time       BIGINT NOT NULL,
    actor_kind TEXT   NOT NULL,
    appid      TEXT,
    request_id TEXT,
    PRIMARY KEY (team_id, first_seq)
);

-- The events stored so far: a row where the time or the actor differs from the event before.
INSERT INTO event_writes (team_id, first_seq, time, actor_kind, appid, request_id)
SELECT team_id, seq, time, actor_kind, appid, request_id FROM (
    SELECT team_id, seq, time, actor_kind, appid, request_id,
        LAG(seq) OVER w AS before_seq,
        LAG(time) OVER w AS before_time,
        LAG(actor_kind) OVER w AS before_kind,
        LAG(appid) OVER w AS before_appid,
        LAG(request_id) OVER w AS before_request
    FROM events WINDOW w AS (PARTITION BY team_id ORDER BY seq)
) e
WHERE before_seq IS NULL
    OR before_seq <> seq - 1
    OR before_time <> time
    OR before_kind <> actor_kind
    OR before_appid IS DISTINCT FROM appid
    OR before_request IS DISTINCT FROM request_id;

ALTER TABLE events
    DROP COLUMN time,
    DROP COLUMN actor_kind,
    DROP COLUMN appid,
    DROP COLUMN request_id;
