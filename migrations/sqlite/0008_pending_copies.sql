-- A staged large write (a sync) that has been decided and is being copied in, in short
-- transactions that let other writes through between them (src/store/sqlite/copy.rs).
--
-- The row is written by the transaction that decides the write (the team's version check,
-- which also takes its event numbers), so from that commit on the write stands: the staging
-- file it names was made durable before, and the copy is idempotent, so whoever finds the row
-- with the file unheld (the process that made it was killed, or its copy failed) finishes the
-- copy before reading the team: on opening the database, and before loading the team's
-- directory. The last transaction of the copy deletes the row.
CREATE TABLE pending_copies (
    team_id INTEGER PRIMARY KEY,
    -- The staging file's name, in the database's folder.
    file    TEXT    NOT NULL
);
