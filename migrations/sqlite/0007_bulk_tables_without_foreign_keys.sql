-- The tables a directory sync fills by the million (app_users, members, memberships) lose their
-- foreign keys, as they did on PostgreSQL (its 0002_bulk_writes.sql). SQLite checks a foreign key
-- by looking the parent row up for every row inserted: a first sync of 1,000,000 members spent
-- about a fifth of its time there (docs/SYNC.md, "Speed").
--
-- What the keys guarded is kept by other means:
-- - Users, apps and teams are never deleted, so app_users and members cannot point at a missing
--   user, app or team.
-- - Memberships are written only by the directory write (src/store/sqlite/directory.rs), which
--   holds the one write lock, from a copy of the directory in which every group and member they
--   name exists; groups are never deleted (a deleted group is a tombstone). Removing a member
--   deletes its memberships in the same statement sequence (this was ON DELETE CASCADE).
-- - `contactsd admin check` verifies that every membership names a group of its team and a
--   member, that every member is an existing user of an existing team, and that every openid
--   names an existing user and app.
--
-- SQLite cannot drop a constraint: each table is made again without it and its rows copied,
-- memberships first (it names members). A database of a million members takes a few seconds,
-- once.

CREATE TABLE memberships_new (
    team_id  INTEGER NOT NULL,
    user_id  INTEGER NOT NULL,
    group_id INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id, group_id)
) WITHOUT ROWID;
INSERT INTO memberships_new (team_id, user_id, group_id)
    SELECT team_id, user_id, group_id FROM memberships;
DROP TABLE memberships;
ALTER TABLE memberships_new RENAME TO memberships;

-- nickname/avatar '' means "use the user's own".
CREATE TABLE members_new (
    team_id    INTEGER NOT NULL,
    user_id    INTEGER NOT NULL,
    role       INTEGER NOT NULL,
    nickname   TEXT    NOT NULL,
    avatar     TEXT    NOT NULL,
    source     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    upd_at     INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
) WITHOUT ROWID;
INSERT INTO members_new (team_id, user_id, role, nickname, avatar, source, created_at, upd_at)
    SELECT team_id, user_id, role, nickname, avatar, source, created_at, upd_at FROM members;
DROP TABLE members;
ALTER TABLE members_new RENAME TO members;

CREATE TABLE app_users_new (
    appid   TEXT    NOT NULL,
    openid  TEXT    NOT NULL,
    user_id INTEGER NOT NULL,
    PRIMARY KEY (appid, openid)
) WITHOUT ROWID;
INSERT INTO app_users_new (appid, openid, user_id) SELECT appid, openid, user_id FROM app_users;
DROP TABLE app_users;
ALTER TABLE app_users_new RENAME TO app_users;
CREATE INDEX app_users_by_user ON app_users (user_id);
