-- SCIM 2.0 provisioning (§12): bearer tokens per directory, the app whose users SCIM creates,
-- and the SCIM attributes of those users.

-- Only the SHA-256 digest of a token is stored; revoking deletes the row.
CREATE TABLE scim_tokens (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    team_id    INTEGER NOT NULL REFERENCES teams (id),
    token_hash BLOB    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE INDEX scim_tokens_by_team ON scim_tokens (team_id);

-- The team app that registers the users SCIM provisions into a directory (one per team).
CREATE TABLE scim_apps (
    team_id INTEGER PRIMARY KEY REFERENCES teams (id),
    appid   TEXT    NOT NULL UNIQUE REFERENCES apps (appid)
);

-- A SCIM user of a directory: its user, its SCIM id (also the user's openid under the
-- directory's SCIM app), its userName lower-cased (unique per directory), and the resource as last written (JSON, without id, groups or meta).
CREATE TABLE scim_users (
    team_id     INTEGER NOT NULL REFERENCES teams (id),
    user_id     INTEGER NOT NULL REFERENCES users (id),
    scim_id     TEXT    NOT NULL,
    user_name_key TEXT  NOT NULL,
    external_id TEXT,
    active      INTEGER NOT NULL,
    resource    TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (team_id, user_id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX scim_users_by_name ON scim_users (team_id, user_name_key);
CREATE UNIQUE INDEX scim_users_by_id ON scim_users (team_id, scim_id);
