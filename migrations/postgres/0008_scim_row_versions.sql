-- A SCIM user's row counts its writes, so that a PUT, PATCH or DELETE, which reads the row and
-- writes it whole, is written only over the row it read: if another write of the user (or its
-- deletion) came in between, a statement before the write inserts a placeholder row at -1, which
-- the check refuses, and the request is made again on the row as it now is (store::scim,
-- `push_scim_row_current`).
ALTER TABLE scim_users ADD COLUMN row_version BIGINT NOT NULL DEFAULT 0
    CONSTRAINT scim_users_row_current CHECK (row_version >= 0);
