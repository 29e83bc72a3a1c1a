//! Directories on SQLite: a directory is read in JSON chunks of 100,000 rows ([`bulk_read`]),
//! and a write checks and bumps the team's version in its first statement (the writing
//! connection is the only one, so nothing can change the team before the commit), sent with
//! the write's savepoint, and writes runs of changes as multi-row statements, numbering new
//! groups itself, held back and sent together as one multi-statement query. A team's later
//! writes in the same batch are checked against what the batch wrote ([`Known`]), and their
//! savepoint and bump go with their changes: one query each. A SCIM write's statements go with
//! its change's rows ([`scim`]).

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite};

use super::staging::{REMOVED_MEMBERS, REWRITTEN_MEMBERS};
use super::statements::{push_bump, push_groups, push_joins, push_listed, upsert_members};
use super::users::next_user_id;
use super::{BATCH_ROWS, SqliteStore, bulk_read, json_ids, scim};
use crate::domain::directory::{DirectoryBuilder, Group, GroupStep, Kept, Placement, Staging};
use crate::domain::events::{Actor, NewEvent};
use crate::domain::values::{GroupId, GroupName, RemoteId, Role, Source, TeamId, UserId};
use crate::store::apply::{ChangeWriter, NewGroup, PlacedMember, SteppedMember};
use crate::store::backend::{
    BackendDirectory, ScimStart, TeamVersion, TeamVersions, Tx, WriteStart,
};
use crate::store::in_flight::WriteConn;
use crate::store::rows::role_of;
use crate::store::scim::{self as store_scim, ScimWrite};
use crate::store::{ChangeChunks, LargeWrite, StagedWrite, StoreError, StoreResult, shared};

/// A group row as the bulk read encodes it (`is_valid` is an integer in SQLite's JSON).
type GroupRow = (GroupId, GroupId, i64, String, String, i64, i64, i64, i64);

#[async_trait]
impl BackendDirectory for SqliteStore {
    type Writer = SqliteWriter;
    type Known = Known;

    async fn read_directory(
        tx: &mut Tx<Self>,
        team_id: TeamId,
        builder: &mut DirectoryBuilder,
    ) -> StoreResult<()> {
        bulk_read(
            tx,
            "SELECT json_group_array(json_array(id, parent_id, source, remote_id, name, \
             sort_order, is_valid, created_at, upd_at)), max(id) FROM (SELECT * FROM groups \
             WHERE team_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3)",
            team_id,
            0_i64,
            |chunk: Vec<GroupRow>| {
                for (id, parent_id, source, remote_id, name, order, valid, created_at, upd_at) in
                    chunk
                {
                    builder.add_group(Group {
                        id,
                        parent_id,
                        source: Source::from_code(source),
                        remote_id: RemoteId::from_stored(remote_id),
                        name: GroupName::from_stored(name),
                        order,
                        is_valid: valid != 0,
                        created_at,
                        upd_at,
                    });
                }
                Ok(())
            },
        )
        .await?;
        // Members chunk by chunk: the roles of the next members after the cursor, then the
        // memberships of exactly those members.
        let mut after = UserId::default();
        loop {
            let (json, last): (String, Option<UserId>) = sqlx::query_as(
                "SELECT json_group_array(json_array(user_id, role)), max(user_id) FROM \
                 (SELECT user_id, role FROM members WHERE team_id = ?1 AND user_id > ?2 \
                 ORDER BY user_id LIMIT ?3)",
            )
            .bind(team_id)
            .bind(after)
            .bind(super::BULK_CHUNK)
            .fetch_one(&mut **tx)
            .await?;
            let Some(last) = last else { return Ok(()) };
            let roles = serde_json::from_str::<Vec<(UserId, i64)>>(&json)?
                .into_iter()
                .map(|(user_id, role)| Ok((user_id, role_of(role)?)))
                .collect::<StoreResult<Vec<_>>>()?;
            let json: String = sqlx::query_scalar(
                "SELECT json_group_array(json_array(user_id, group_id)) FROM memberships \
                 WHERE team_id = ?1 AND user_id > ?2 AND user_id <= ?3",
            )
            .bind(team_id)
            .bind(after)
            .bind(last)
            .fetch_one(&mut **tx)
            .await?;
            let mut memberships: Vec<(UserId, GroupId)> = serde_json::from_str(&json)?;
            memberships.sort_unstable();
            add_members(builder, roles, &memberships);
            after = last;
        }
    }

    async fn start_apply(
        mut tx: Tx<Self>,
        start: WriteStart,
        known: &mut Known,
    ) -> StoreResult<Result<SqliteWriter, Tx<Self>>> {
        let WriteStart {
            savepoint,
            team_id,
            now,
            ..
        } = start;
        if let Some((next_group_id, next_user_id)) = known.next_ids
            && let Some(checked) = known.teams.check(&start)
        {
            let Some(team) = checked else {
                // Begun only for the caller to undo, as after a check that was asked.
                sqlx::raw_sql(savepoint).execute(&mut *tx).await?;
                return Ok(Err(tx));
            };
            let bumped = (team.version, team.last_seq, next_group_id, next_user_id);
            let mut writer = SqliteWriter::new(tx, team_id, now, bumped);
            writer.hold(0, |query| push_bump(query, &start)).await?;
            return Ok(Ok(writer));
        }
        // Sent with the savepoint (each query is a round trip to the driver's thread, and
        // writes are serialized); it learns the next ids too.
        let mut query = QueryBuilder::new("");
        push_bump(&mut query, &start);
        query.push(concat!(
            " RETURNING version, event_seq, MAX(COALESCE((SELECT seq FROM sqlite_sequence \
                 WHERE name = 'groups'), 0), COALESCE((SELECT MAX(id) FROM groups), 0)) + 1, ",
            next_user_id!()
        ));
        let bumped: Option<Bumped> = query.build_query_as().fetch_optional(&mut *tx).await?;
        Ok(match bumped {
            Some(bumped) => Ok(SqliteWriter::new(tx, team_id, now, bumped)),
            None => Err(tx),
        })
    }

    async fn start_scim_apply(
        tx: Tx<Self>,
        start: WriteStart,
        scim: &ScimWrite,
        known: &mut Known,
    ) -> StoreResult<ScimStart<Self>> {
        let mut writer = match Self::start_apply(tx, start, known).await? {
            Ok(writer) => writer,
            Err(tx) => return Ok(Err((tx, StoreError::Conflict))),
        };
        let registered = writer.hold_scim(scim).await?;
        Ok(Ok((writer, registered)))
    }

    async fn finish_apply(
        writer: SqliteWriter,
        stands: bool,
        known: &mut Known,
    ) -> StoreResult<(Tx<Self>, i64)> {
        let tx = writer.conn.finish().await?;
        if stands {
            known.teams.record(writer.team_id, writer.team);
            known.next_ids = Some((writer.next_group_id, writer.next_user_id));
        }
        Ok((tx, writer.team.version))
    }

    async fn forget(_tx: &mut Tx<Self>, known: &mut Known) -> StoreResult<()> {
        *known = Known::default();
        Ok(())
    }

    /// Nothing is held: a write's events go with its rows.
    async fn before_commit(_tx: &mut Tx<Self>, _known: &mut Known) -> StoreResult<()> {
        Ok(())
    }

    async fn stage(
        &self,
        write: LargeWrite,
        staging: Staging,
        chunks: &mut dyn ChangeChunks,
        actor: &Actor,
    ) -> StoreResult<Option<Box<dyn StagedWrite>>> {
        super::staging::stage(self, write, staging, chunks, actor).await
    }

    async fn settle(&self, team_id: TeamId) -> StoreResult<()> {
        super::copy::settle(self, team_id).await
    }

    async fn copy_pending(tx: &mut Tx<Self>, team_id: TeamId) -> StoreResult<bool> {
        super::copy::is_pending(tx, team_id).await
    }
}

/// What a batch knows of the database because it wrote it: the batch's transaction holds
/// SQLite's one write lock from its start (`BEGIN IMMEDIATE`), so no other connection, of this
/// process or another, changes a team row or adds a group or a user before its commit. A team's next
/// write in the same batch is then checked here, and its version bump is sent with its first
/// changes: one round trip to the driver's thread instead of two.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// The next group id and the next user id, as the last write that stood left them.
    next_ids: Option<(GroupId, UserId)>,
    teams: TeamVersions,
}

/// Add each member of a chunk to `builder`, from its role and its memberships, both ascending
/// by user id.
fn add_members(
    builder: &mut DirectoryBuilder,
    roles: Vec<(UserId, Role)>,
    memberships: &[(UserId, GroupId)],
) {
    let mut rest = memberships;
    for (user_id, role) in roles {
        // Skip memberships of users before this one (none in a consistent database).
        let start = rest.partition_point(|(member, _)| *member < user_id);
        let end = start + rest[start..].partition_point(|(member, _)| *member == user_id);
        let groups = rest[start..end].iter().map(|(_, group)| *group).collect();
        rest = &rest[end..];
        builder.add_member(user_id, Placement { role, groups });
    }
}

/// What the version check learns ([`push_bump`] with its `RETURNING`) or [`Known`] holds: the
/// new version, the last event number taken, the next group id and the next user id.
type Bumped = (i64, i64, GroupId, UserId);

/// Where a writer's rows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// The database, changed in place.
    Database,
    /// A staging file, copied in later ([`super::staging`]): a changed group is written whole,
    /// and the members whose memberships are replaced, or who are removed, are listed for the
    /// copy (`rewrites`: whether the write changes stored rows at all; one that only adds
    /// lists nothing).
    Staging { rewrites: bool },
}

/// The writes of one directory change; the version is already bumped. Its statements are held
/// back and sent together ([`SqliteWriter::hold`]): a small write's rows and events go in one
/// round trip to the driver's thread.
pub(crate) struct SqliteWriter {
    conn: WriteConn<SqliteStore>,
    target: Target,
    /// Whether gathered queries are sent without waiting ([`ChangeWriter::large_write`]).
    in_flight: bool,
    team_id: TeamId,
    now: i64,
    /// The team as the write leaves it.
    team: TeamVersion,
    next_group_id: GroupId,
    next_user_id: UserId,
    /// Statements not yet sent, each with positional (`?`) parameters only, so that each binds
    /// the next of the arguments in order.
    held: QueryBuilder<Sqlite>,
    held_statements: usize,
    /// Rows the held statements write.
    held_rows: usize,
    /// Whether the held statements include a SCIM write's, whose refusal is named
    /// ([`store_scim::write_error`]).
    held_scim: bool,
}

impl SqliteWriter {
    fn new(
        tx: Tx<SqliteStore>,
        team_id: TeamId,
        now: i64,
        (version, last_seq, next_group_id, next_user_id): Bumped,
    ) -> SqliteWriter {
        SqliteWriter {
            conn: WriteConn::new(tx),
            target: Target::Database,
            in_flight: false,
            team_id,
            now,
            team: TeamVersion { version, last_seq },
            next_group_id,
            next_user_id,
            held: QueryBuilder::new(""),
            held_statements: 0,
            held_rows: 0,
            held_scim: false,
        }
    }

    /// A writer into a staging file ([`super::staging`]), whose transaction has no team row
    /// to bump: the team is at `version`, its last event number is `last_seq`, and the write's
    /// new groups are numbered from `first_group` (ids reserved in the database).
    pub(super) fn staging(
        tx: Tx<SqliteStore>,
        team_id: TeamId,
        now: i64,
        staging: Staging,
        (version, last_seq, first_group): (i64, i64, GroupId),
    ) -> SqliteWriter {
        let mut writer = SqliteWriter::new(
            tx,
            team_id,
            now,
            (version, last_seq, first_group, UserId::new(0)),
        );
        writer.target = Target::Staging {
            rewrites: !staging.only_adds,
        };
        writer
    }

    /// Wait for what was sent and give the transaction back, with the next group id it would
    /// have drawn.
    pub(super) async fn finish(self) -> StoreResult<(Tx<SqliteStore>, GroupId)> {
        let next_group_id = self.next_group_id;
        Ok((self.conn.finish().await?, next_group_id))
    }

    /// Hold back the statements of SCIM write `write`; the user a [`ScimWrite::Create`]
    /// registers gets the next user id, answered.
    pub(super) async fn hold_scim(&mut self, write: &ScimWrite) -> StoreResult<Option<UserId>> {
        let new_user = self.next_user_id;
        let registered = matches!(write, ScimWrite::Create { .. }).then(|| {
            self.next_user_id = UserId::new(new_user.get() + 1);
            new_user
        });
        let (team_id, now) = (self.team_id, self.now);
        self.held_scim = true;
        self.hold(1, |query| scim::push(query, team_id, write, now, new_user))
            .await?;
        Ok(registered)
    }

    /// Hold back one statement, written by `build`, that writes `rows` rows; the held
    /// statements are sent once they write [`BATCH_ROWS`] rows.
    async fn hold(
        &mut self,
        rows: usize,
        build: impl FnOnce(&mut QueryBuilder<Sqlite>) + Send,
    ) -> StoreResult<()> {
        build(&mut self.held);
        self.held.push(";\n");
        self.held_statements += 1;
        self.held_rows += rows;
        if self.held_rows >= BATCH_ROWS {
            self.send().await?;
        }
        Ok(())
    }

    /// Send the held statements, in one query.
    async fn send(&mut self) -> StoreResult<()> {
        if self.held_statements == 0 {
            return Ok(());
        }
        // A failure may be that of the query sent before, in flight: only a sync's chunks are
        // sent so, and they hold no SCIM write.
        let sent = self.conn.send(&mut self.held, self.in_flight).await;
        let scim = std::mem::take(&mut self.held_scim);
        self.held.reset();
        self.held_statements = 0;
        self.held_rows = 0;
        match sent {
            Ok(_) => Ok(()),
            Err(error) if scim => Err(store_scim::write_error(error)),
            Err(error) => Err(error.into()),
        }
    }
}

#[async_trait]
impl ChangeWriter for SqliteWriter {
    const BATCH_ROWS: usize = BATCH_ROWS;

    async fn group_ids(&mut self, n: usize) -> StoreResult<Vec<GroupId>> {
        let first = self.next_group_id.get();
        let end = first + n as i64;
        self.next_group_id = GroupId::new(end);
        Ok((first..end).map(GroupId::new).collect())
    }

    async fn insert_groups(&mut self, groups: &[NewGroup<'_>]) -> StoreResult<()> {
        let team_id = self.team_id;
        let rows = groups
            .iter()
            .map(|new| (new.id, new.parent_id, new.group, true));
        self.hold(groups.len(), |query| {
            push_groups(query, "INSERT", team_id, rows);
        })
        .await
    }

    async fn update_group(&mut self, group: &Group, parent_id: GroupId) -> StoreResult<()> {
        if self.target != Target::Database {
            // Whole, replacing what the write staged for it before; the copy replaces the
            // stored row.
            let (team_id, row) = (self.team_id, (group.id, parent_id, group, group.is_valid));
            return self
                .hold(1, |query| {
                    push_groups(query, "INSERT OR REPLACE", team_id, [row]);
                })
                .await;
        }
        // Its statement numbers its parameters: sent on its own, after what is held.
        self.send().await?;
        shared::update_group(self.team_id, group, parent_id)
            .execute(&mut **self.conn.tx().await?)
            .await?;
        Ok(())
    }

    async fn put_members(&mut self, members: &[PlacedMember<'_>], kept: Kept) -> StoreResult<()> {
        if self.target != Target::Database && kept != Kept::NONE {
            // The copy overwrites the stored rows wholly.
            return Err(StoreError::Inconsistent(
                "a staged write cannot keep a member's stored name or avatar".to_owned(),
            ));
        }
        let (team_id, now) = (self.team_id, self.now);
        // Only the members whose groups are given have their memberships replaced.
        let users: Vec<UserId> = members
            .iter()
            .filter(|placed| placed.groups.is_some())
            .map(|placed| placed.member.user_id)
            .collect();
        let wanted: Vec<(UserId, GroupId)> = members
            .iter()
            .flat_map(|placed| {
                let user_id = placed.member.user_id;
                placed
                    .groups
                    .iter()
                    .flatten()
                    .map(move |group| (user_id, *group))
            })
            .collect();
        let (users, wanted_json) = (json_ids(&users)?, json_ids(&wanted)?);
        let target = self.target;
        // The memberships are replaced by difference, without reading them: only those no
        // longer wanted are deleted and only the new ones inserted, so a member joining one
        // more group costs one inserted row rather than rewriting all its memberships. The
        // memberships statements take their rows as JSON, so their text is the same whatever
        // the number of rows.
        self.hold(members.len() + wanted.len(), |query| {
            upsert_members(
                query,
                team_id,
                now,
                members.iter().map(|placed| placed.member),
                shared::rewrite_member(kept),
            );
            query.push(";\n");
            match target {
                Target::Database => {
                    query
                        .push("DELETE FROM memberships WHERE team_id = ")
                        .push_bind(team_id)
                        .push(" AND user_id IN (SELECT value FROM json_each(")
                        .push_bind(users)
                        .push(
                            ")) AND (user_id, group_id) NOT IN \
                             (SELECT value ->> 0, value ->> 1 FROM json_each(",
                        )
                        .push_bind(wanted_json.clone())
                        .push("));\n");
                }
                // The copy deletes the memberships of the listed members that are not staged.
                Target::Staging { rewrites: true } => {
                    push_listed(query, REWRITTEN_MEMBERS, team_id, users);
                    query.push(";\n");
                }
                Target::Staging { rewrites: false } => {}
            }
            push_joins(query, team_id, wanted_json);
        })
        .await
    }

    async fn step_members(&mut self, members: &[SteppedMember<'_>]) -> StoreResult<()> {
        if self.target != Target::Database {
            // Only writes of the kinds `Staging` names are staged.
            return Err(StoreError::Inconsistent(
                "a staged write cannot step members into or out of groups".to_owned(),
            ));
        }
        let (team_id, now) = (self.team_id, self.now);
        let memberships = |step: GroupStep| -> Vec<(UserId, GroupId)> {
            members
                .iter()
                .filter(|stepped| stepped.step == step)
                .map(|stepped| (stepped.member.user_id, stepped.group))
                .collect()
        };
        let (joins, leaves) = (memberships(GroupStep::Join), memberships(GroupStep::Leave));
        let (joins_json, leaves_json) = (json_ids(&joins)?, json_ids(&leaves)?);
        self.hold(2 * members.len(), |query| {
            upsert_members(
                query,
                team_id,
                now,
                members.iter().map(|stepped| stepped.member),
                shared::STEP_MEMBER,
            );
            if !joins.is_empty() {
                query.push(";\n");
                push_joins(query, team_id, joins_json);
            }
            if !leaves.is_empty() {
                query
                    .push(";\nDELETE FROM memberships WHERE team_id = ")
                    .push_bind(team_id)
                    .push(
                        " AND (user_id, group_id) IN \
                         (SELECT value ->> 0, value ->> 1 FROM json_each(",
                    )
                    .push_bind(leaves_json)
                    .push("))");
            }
        })
        .await
    }

    /// Memberships first: the table has no foreign key to cascade from (see the migrations).
    async fn remove_members(&mut self, users: &[UserId]) -> StoreResult<()> {
        let (team_id, users_json) = (self.team_id, json_ids(users)?);
        if self.target != Target::Database {
            // The copy deletes them and their memberships.
            return self
                .hold(users.len(), |query| {
                    push_listed(query, REMOVED_MEMBERS, team_id, users_json);
                })
                .await;
        }
        for table in ["memberships", "members"] {
            let users_json = users_json.clone();
            self.hold(users.len(), |query| {
                query
                    .push("DELETE FROM ")
                    .push(table)
                    .push(" WHERE team_id = ")
                    .push_bind(team_id)
                    .push(" AND user_id IN (SELECT value FROM json_each(")
                    .push_bind(users_json)
                    .push("))");
            })
            .await?;
        }
        Ok(())
    }

    /// Seven values a row, within SQLite's 32,766 bound parameters.
    const BATCH_EVENTS: usize = 2000;

    fn last_seq(&self) -> i64 {
        self.team.last_seq
    }

    async fn insert_events(
        &mut self,
        first_seq: i64,
        actor: &Actor,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        let (team_id, now) = (self.team_id, self.now);
        // What every event of the write shares is stored once.
        self.hold(1, |query| {
            query
                .push(
                    "INSERT INTO event_writes (team_id, first_seq, time, actor_kind, appid, \
                     request_id) VALUES (",
                )
                .push_bind(team_id)
                .push(", ")
                .push_bind(first_seq)
                .push(", ")
                .push_bind(now)
                .push(", ")
                .push_bind(actor.kind.as_str())
                .push(", ")
                .push_bind(actor.appid.clone())
                .push(", ")
                .push_bind(actor.request_id.clone())
                .push(")");
        })
        .await?;
        self.hold(events.len(), |query| {
            let mut seq = first_seq;
            query
                .push(
                    "INSERT INTO events (team_id, seq, type, object_kind, object_id, remote_id, \
                     before, after) SELECT w.team_id, e.* FROM (SELECT ",
                )
                .push_bind(team_id)
                .push(" AS team_id) AS w, (")
                .push_values(events, |mut row, event| {
                    row.push_bind(seq)
                        .push_bind(event.event_type)
                        .push_bind(event.object_kind)
                        .push_bind(event.object_id)
                        .push_bind(event.remote_id.clone())
                        .push_bind(event.before.clone())
                        .push_bind(event.after.clone());
                    seq += 1;
                })
                .push(") AS e");
        })
        .await
    }

    async fn flush(&mut self) -> StoreResult<()> {
        self.send().await?;
        Ok(self.conn.settle().await?)
    }

    fn large_write(&mut self) {
        self.in_flight = true;
    }
}
