-- Quotas set by `contactsd admin set-quota`. A missing row or a NULL column means the server's
-- default (its settings); a value overrides it for that org or platform app.
CREATE TABLE org_quotas (
    org_id      INTEGER PRIMARY KEY REFERENCES orgs (id),
    max_groups  INTEGER,
    max_members INTEGER
);

CREATE TABLE app_quotas (
    appid    TEXT PRIMARY KEY REFERENCES apps (appid),
    max_orgs INTEGER
);

-- Orgs a platform app created, counted against its quota.
CREATE INDEX orgs_by_creator_appid ON orgs (creator_appid);
