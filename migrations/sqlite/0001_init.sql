-- contactsd schema for the embedded SQLite backend.
-- Times are unix seconds (UTC). Group rows are never deleted: a deleted group is a tombstone.

CREATE TABLE orgs (
    id              INTEGER PRIMARY KEY,
    name            TEXT    NOT NULL,
    plan            TEXT    NOT NULL,
    phone           TEXT    NOT NULL DEFAULT '',
    admin_seats     INTEGER NOT NULL,
    creator_user_id INTEGER,
    creator_appid   TEXT,
    created_at      INTEGER NOT NULL
);
CREATE INDEX orgs_by_creator_user ON orgs (creator_user_id);

-- One contacts directory per org; `version` grows by one with every committed change.
CREATE TABLE teams (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    org_id  INTEGER NOT NULL UNIQUE REFERENCES orgs (id),
    version INTEGER NOT NULL DEFAULT 0
);

-- org_id NULL marks a platform app.
CREATE TABLE apps (
    appid       TEXT    PRIMARY KEY,
    name        TEXT    NOT NULL,
    org_id      INTEGER REFERENCES orgs (id),
    secret_hash BLOB    NOT NULL,
    created_at  INTEGER NOT NULL
);

-- At most one row per app: issuing a token replaces the previous one.
CREATE TABLE tokens (
    appid      TEXT    PRIMARY KEY REFERENCES apps (appid),
    token_hash BLOB    NOT NULL UNIQUE,
    expires_at INTEGER NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    respondent_id INTEGER NOT NULL UNIQUE,
    nickname      TEXT    NOT NULL,
    avatar        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE app_users (
    appid   TEXT    NOT NULL REFERENCES apps (appid),
    openid  TEXT    NOT NULL,
    user_id INTEGER NOT NULL REFERENCES users (id),
    PRIMARY KEY (appid, openid)
) WITHOUT ROWID;

CREATE TABLE groups (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id    INTEGER NOT NULL REFERENCES teams (id),
    parent_id  INTEGER NOT NULL,
    source     INTEGER NOT NULL,
    remote_id  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    sort_order INTEGER NOT NULL,
    is_valid   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    upd_at     INTEGER NOT NULL
);
CREATE INDEX groups_by_team ON groups (team_id);
-- The last line of defence for remote-id uniqueness among valid groups.
CREATE UNIQUE INDEX groups_valid_remote_id ON groups (team_id, remote_id)
    WHERE is_valid = 1 AND remote_id <> '';

-- nickname/avatar '' means "use the user's own".
CREATE TABLE members (
    team_id    INTEGER NOT NULL REFERENCES teams (id),
    user_id    INTEGER NOT NULL REFERENCES users (id),
    role       INTEGER NOT NULL,
    nickname   TEXT    NOT NULL,
    avatar     TEXT    NOT NULL,
    source     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    upd_at     INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
) WITHOUT ROWID;

CREATE TABLE memberships (
    team_id  INTEGER NOT NULL,
    user_id  INTEGER NOT NULL,
    group_id INTEGER NOT NULL REFERENCES groups (id),
    PRIMARY KEY (team_id, user_id, group_id),
    FOREIGN KEY (team_id, user_id) REFERENCES members (team_id, user_id) ON DELETE CASCADE
) WITHOUT ROWID;
