-- The tables a directory sync fills by the million (app_users, members, memberships) lose their
-- foreign keys. PostgreSQL checks a foreign key with one query per inserted row, which made those
-- inserts three times slower: a first sync of 1,000,000 members spent most of its time there.
--
-- What the keys guarded is kept by other means:
-- - Users and apps are never deleted (a registration that loses a race deletes only the user row
--   it created, which nothing references yet), so app_users and members cannot point at a
--   missing user or app, and members at a missing team.
-- - Memberships are written only by the directory write of src/store/postgres.rs, under the
--   team's lock, from a copy of the directory in which every group and member they name exists;
--   groups are never deleted (a deleted group is a tombstone). Removing a member deletes its
--   memberships in the same statement sequence (this was ON DELETE CASCADE).
-- - `contactsd admin check` verifies that every membership names a valid group and a member, and
--   that every member is an existing user.
ALTER TABLE app_users DROP CONSTRAINT app_users_appid_fkey;
ALTER TABLE app_users DROP CONSTRAINT app_users_user_id_fkey;
ALTER TABLE members DROP CONSTRAINT members_team_id_fkey;
ALTER TABLE members DROP CONSTRAINT members_user_id_fkey;
ALTER TABLE memberships DROP CONSTRAINT memberships_group_id_fkey;
ALTER TABLE memberships DROP CONSTRAINT memberships_team_id_user_id_fkey;
