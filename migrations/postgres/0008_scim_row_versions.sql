-- A SCIM user's row counts its writes, so that a PUT or PATCH, which reads the row and writes it
-- whole, is written only over the row it read: another write of the user in between (or its
-- deletion) makes the statement store -1, which the check refuses, and the request is made
-- again on the row as it now is (store::scim, `ON_SCIM_USER_CONFLICT`).
ALTER TABLE scim_users ADD COLUMN row_version BIGINT NOT NULL DEFAULT 0
    CONSTRAINT scim_users_row_current CHECK (row_version >= 0);
