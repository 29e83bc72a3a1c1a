//! Directories on PostgreSQL: a directory is read in one `REPEATABLE READ READ ONLY` snapshot,
//! groups streamed and each member streamed with its groups aggregated; a write locks the
//! team's row while comparing and bumping the version in one statement, then writes runs of
//! changes as statements over arrays (`UNNEST`) (see the module documentation of [`super`]).

use std::collections::HashSet;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use sqlx::{Execute, Postgres};

use super::batched::{Batched, SpareIds};
use super::{PostgresStore, apply_error};
use crate::domain::directory::{DirectoryBuilder, Group, GroupStep, Kept, MemberRow, Placement};
use crate::domain::events::{Actor, NewEvent};
use crate::domain::values::{GroupId, TeamId, UserId};
use crate::store::apply::{ChangeWriter, NewGroup, PlacedMember, SteppedMember};
use crate::store::backend::{BackendDirectory, ScimStart, TeamVersion, Tx, WriteStart};
use crate::store::in_flight::WriteConn;
use crate::store::rows::{GroupRow, role_of};
use crate::store::scim::ScimWrite;
use crate::store::{StoreError, StoreResult, shared};

#[async_trait]
impl BackendDirectory for PostgresStore {
    type Writer = PgWriter;
    /// A team's first write in a batch asks for its version check: one statement, which locks
    /// the team's row until the commit and so orders the team's writes. What a batch keeps is
    /// the versions it wrote (its team's next writes are checked in memory, their bumps held
    /// for the commit), group ids drawn ahead and the events of its writes ([`Batched`]).
    type Known = Batched;

    async fn read_directory(
        tx: &mut Tx<Self>,
        team_id: TeamId,
        builder: &mut DirectoryBuilder,
    ) -> StoreResult<()> {
        // Rows are decoded one by one as they arrive: collecting a million raw rows first
        // would hold them all (hundreds of bytes each) at once.
        let mut rows = sqlx::query_as::<_, GroupRow>(
            "SELECT id, parent_id, source, remote_id, name, sort_order, is_valid, created_at, \
             upd_at FROM groups WHERE team_id = $1",
        )
        .bind(team_id)
        .fetch(&mut **tx);
        while let Some(row) = rows.try_next().await? {
            builder.add_group(row.into());
        }
        drop(rows);
        // Each member with its groups in one row, in user order: both tables are read along
        // their primary keys and merged as they stream, never sorted.
        let mut rows = sqlx::query_as::<_, (UserId, i64, Vec<GroupId>)>(
            "SELECT b.user_id, b.role, COALESCE(array_agg(m.group_id ORDER BY m.group_id) \
             FILTER (WHERE m.group_id IS NOT NULL), '{}') AS groups \
             FROM members b LEFT JOIN memberships m \
             ON m.team_id = b.team_id AND m.user_id = b.user_id \
             WHERE b.team_id = $1 GROUP BY b.user_id, b.role ORDER BY b.user_id",
        )
        .bind(team_id)
        .fetch(&mut **tx);
        while let Some((user_id, role, groups)) = rows.try_next().await? {
            let role = role_of(role)?;
            builder.add_member(
                user_id,
                Placement {
                    role,
                    groups: groups.into(),
                },
            );
        }
        Ok(())
    }

    async fn start_apply(
        mut tx: Tx<Self>,
        start: WriteStart,
        known: &mut Batched,
    ) -> StoreResult<Result<PgWriter, Tx<Self>>> {
        let checked = known.versions.teams.check(&start);
        // A write that passes its check in memory opens no savepoint of its own: the database
        // refusing it would be the copy disagreeing with rows the batch holds locked, and
        // loses the batch instead (`finish_apply`). That spares each of a team's later writes
        // in a batch a round trip (docs/DESIGN.md, "Write path: group commit").
        let unguarded = matches!(checked, Some(Some(_))) && !start.savepoint.is_empty();
        if !start.savepoint.is_empty() && !unguarded {
            // Without parameters, so in one round trip (the simple query protocol).
            sqlx::raw_sql(start.savepoint)
                .execute(&mut *tx)
                .await
                .map_err(apply_error)?;
        }
        let (team, held) = match checked {
            // The batch holds the team's row: its bump is held for the commit.
            Some(checked) => (checked, true),
            None => {
                // The team lock, the version check and bump and the event numbers in one
                // statement: see the module documentation.
                let bumped: Option<(i64, i64)> = sqlx::query_as(
                    "UPDATE teams SET version = version + 1, event_seq = event_seq + $3 \
                     WHERE id = $1 AND version = $2 RETURNING version, event_seq",
                )
                .bind(start.team_id)
                .bind(start.expected)
                .bind(start.events as i64)
                .fetch_optional(&mut *tx)
                .await
                .map_err(apply_error)?;
                let team = bumped.map(|(version, last_seq)| TeamVersion { version, last_seq });
                (team, false)
            }
        };
        Ok(match team {
            Some(team) => Ok(PgWriter {
                conn: WriteConn::new(tx),
                large: false,
                team_id: start.team_id,
                now: start.now,
                team,
                bump_held: held,
                unguarded,
                fresh: Fresh::No,
                held_from: known.events.len(),
                batched: std::mem::take(known),
            }),
            None => Err(tx),
        })
    }

    async fn start_scim_apply(
        mut tx: Tx<Self>,
        start: WriteStart,
        scim: &ScimWrite,
        known: &mut Batched,
    ) -> StoreResult<ScimStart<Self>> {
        // The SCIM statements one by one: each is checked before the next.
        sqlx::raw_sql(start.savepoint)
            .execute(&mut *tx)
            .await
            .map_err(apply_error)?;
        let registered = match Self::write_scim(&mut tx, start.team_id, scim, start.now).await {
            Ok(registered) => registered,
            Err(refusal) => return Ok(Err((tx, refusal))),
        };
        // The savepoint is begun already.
        let start = WriteStart {
            savepoint: "",
            ..start
        };
        Ok(match Self::start_apply(tx, start, known).await? {
            Ok(writer) => Ok((writer, registered)),
            Err(tx) => Err((tx, StoreError::Conflict)),
        })
    }

    /// The held version bumps are written first. Spare ids are dropped too, so that ids stay
    /// ascending in the order of the writes (a sync draws after them); the held events are the
    /// batch's to insert.
    async fn forget(tx: &mut Tx<Self>, known: &mut Batched) -> StoreResult<()> {
        known.versions.store(tx).await?;
        known.spare = SpareIds::default();
        Ok(())
    }

    async fn before_commit(tx: &mut Tx<Self>, known: &mut Batched) -> StoreResult<()> {
        known.versions.store(tx).await?;
        known.events.insert(tx).await
    }

    async fn finish_apply(
        writer: PgWriter,
        stands: bool,
        known: &mut Batched,
    ) -> StoreResult<(Tx<Self>, i64)> {
        if !stands && writer.unguarded {
            // Nothing to roll back to but the last write's savepoint: the transaction is
            // given up (rolled back as it is dropped), and with it the batch.
            return Err(StoreError::BatchFailed);
        }
        // Ids drawn from the sequence stay drawn whether the write stands or not; its events
        // go with it.
        *known = writer.batched;
        if stands {
            known
                .versions
                .record(writer.team_id, writer.team, writer.bump_held);
        } else {
            known.events.truncate(writer.held_from);
        }
        let tx = writer.conn.finish().await.map_err(apply_error)?;
        Ok((tx, writer.team.version))
    }
}

/// Inserts members given as arrays: the team is `$1`, the columns `$2` to `$6`
/// ([`MemberColumns`]), the time `$7`; followed by how a stored row is overwritten
/// ([`shared::rewrite_member`] or [`shared::STEP_MEMBER`]).
const INSERT_MEMBERS: &str = "INSERT INTO members (team_id, user_id, role, nickname, avatar, \
     source, created_at, upd_at) \
     SELECT $1, user_id, role, nickname, avatar, source, $7, $7 \
     FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[]) \
     AS m (user_id, role, nickname, avatar, source)";

/// A query answering one column.
type Scalar<'a, O> = sqlx::query::QueryScalar<'a, sqlx::Postgres, O, sqlx::postgres::PgArguments>;

/// The columns of members, as the arrays [`INSERT_MEMBERS`] takes.
struct MemberColumns<'a> {
    users: Vec<UserId>,
    roles: Vec<i64>,
    nicknames: Vec<&'a str>,
    avatars: Vec<&'a str>,
    sources: Vec<i64>,
}

impl<'a> MemberColumns<'a> {
    fn of(members: impl ExactSizeIterator<Item = &'a MemberRow>) -> MemberColumns<'a> {
        let n = members.len();
        let mut columns = MemberColumns {
            users: Vec::with_capacity(n),
            roles: Vec::with_capacity(n),
            nicknames: Vec::with_capacity(n),
            avatars: Vec::with_capacity(n),
            sources: Vec::with_capacity(n),
        };
        for member in members {
            columns.users.push(member.user_id);
            columns.roles.push(member.role.code());
            columns.nicknames.push(member.nickname.as_str());
            columns.avatars.push(member.avatar.as_str());
            columns.sources.push(member.source.code());
        }
        columns
    }

    /// `query` with the team, these columns and the time bound as `$1` to `$7`.
    fn bind<O>(self, query: Scalar<'a, O>, team_id: TeamId, now: i64) -> Scalar<'a, O> {
        query
            .bind(team_id)
            .bind(self.users)
            .bind(self.roles)
            .bind(self.nicknames)
            .bind(self.avatars)
            .bind(self.sources)
            .bind(now)
    }
}

/// The writes of one directory change, under the team's lock.
pub(crate) struct PgWriter {
    conn: WriteConn<PostgresStore>,
    /// A large write ([`ChangeWriter::large_write`]): a statement whose answer is not needed
    /// is left in flight while the next is made, and events are inserted as they come rather
    /// than held for the batch's commit.
    large: bool,
    team_id: TeamId,
    now: i64,
    /// The team as the write leaves it.
    team: TeamVersion,
    /// Whether the write was checked in memory: its version bump is held for the commit.
    bump_held: bool,
    /// Whether the write runs without a savepoint of its own, so that it cannot be undone
    /// alone ([`BackendDirectory::start_apply`]).
    unguarded: bool,
    fresh: Fresh,
    /// What the batch keeps, while this write holds it.
    batched: Batched,
    /// How many events the batch held before this write.
    held_from: usize,
}

/// Whether a large write (a sync, [`ChangeWriter::large_write`]) may insert members without
/// `ON CONFLICT`, which checks every row before inserting it: in a team that had no members
/// and no memberships when the write began, a member the write has not touched yet cannot
/// collide. The check doubled the time a first sync of a million members spent writing them
/// and their memberships (docs/SYNC.md, "Speed").
///
/// What the write touched is kept as the highest user id, not as a set of users (16 MB and
/// more for a million): a user above it is new to the write, and one at or below it may not be,
/// so its run is written with `ON CONFLICT`. A sync writes its members in ascending user order,
/// so each of them is above.
enum Fresh {
    /// A large write that has not asked yet.
    Unknown,
    /// The team had members or memberships, or the write is small (asking would cost it a
    /// round trip).
    No,
    /// The team had none; no user the write has put or stepped so far has a higher id than
    /// this (`None`: no user yet; one it removed without that had no rows to collide with).
    Yes { highest: Option<UserId> },
}

impl PgWriter {
    /// The transaction's connection, once the statement in flight (if any) is written.
    async fn conn(&mut self) -> StoreResult<&mut sqlx::PgConnection> {
        Ok(&mut **self.conn.tx().await.map_err(apply_error)?)
    }

    /// Send `query`, whose answer is not needed; in a large write it is written while the
    /// next one is made.
    async fn send<'q, E: Execute<'q, Postgres>>(&mut self, query: E) -> StoreResult<()> {
        self.conn.send(query, self.large).await.map_err(apply_error)
    }

    /// Whether `users`, none of them twice, may be inserted as members without `ON CONFLICT`
    /// (see [`Fresh`]); they count as touched from now on either way.
    async fn all_fresh(&mut self, users: impl Iterator<Item = UserId>) -> StoreResult<bool> {
        if let Fresh::Unknown = self.fresh {
            let empty: bool = sqlx::query_scalar(
                "SELECT NOT EXISTS (SELECT 1 FROM members WHERE team_id = $1) \
                 AND NOT EXISTS (SELECT 1 FROM memberships WHERE team_id = $1)",
            )
            .bind(self.team_id)
            .fetch_one(self.conn().await?)
            .await
            .map_err(apply_error)?;
            self.fresh = if empty {
                Fresh::Yes { highest: None }
            } else {
                Fresh::No
            };
        }
        let Fresh::Yes { highest } = &mut self.fresh else {
            return Ok(false);
        };
        let above = *highest;
        let mut fresh = true;
        for user in users {
            fresh &= Some(user) > above;
            *highest = (*highest).max(Some(user));
        }
        Ok(fresh)
    }

    /// Count `users` as touched by the write (see [`Fresh`]).
    fn touch(&mut self, users: impl Iterator<Item = UserId>) {
        if let Fresh::Yes { highest } = &mut self.fresh {
            *highest = (*highest).max(users.max());
        }
    }

    /// Insert `members`, new to the team, and their memberships, without `ON CONFLICT`.
    async fn insert_fresh(
        &mut self,
        members: &[PlacedMember<'_>],
        placed_users: Vec<UserId>,
        placed_groups: Vec<GroupId>,
    ) -> StoreResult<()> {
        let columns = MemberColumns::of(members.iter().map(|placed| placed.member));
        let (team_id, now) = (self.team_id, self.now);
        self.send(columns.bind::<i64>(sqlx::query_scalar(INSERT_MEMBERS), team_id, now))
            .await?;
        self.insert_memberships(placed_users, placed_groups, "")
            .await
    }

    /// Insert the team's memberships of `users[i]` in `groups[i]`, the statement ending with
    /// `conflict` (empty, or `ON CONFLICT DO NOTHING` where some may exist already).
    async fn insert_memberships(
        &mut self,
        users: Vec<UserId>,
        groups: Vec<GroupId>,
        conflict: &'static str,
    ) -> StoreResult<()> {
        if users.is_empty() {
            return Ok(());
        }
        let query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO memberships (team_id, user_id, group_id) \
             SELECT $1, user_id, group_id FROM UNNEST($2::BIGINT[], $3::BIGINT[]) \
             AS p (user_id, group_id){conflict}"
        )))
        .bind(self.team_id)
        .bind(users)
        .bind(groups);
        self.send(query).await
    }

    /// Delete the rows of `users` in the team from `table` (`members` or `memberships`).
    async fn delete_users(&mut self, table: &'static str, users: &[UserId]) -> StoreResult<()> {
        // A join rather than `= ANY($2)`: without statistics (a table filled by this very sync)
        // the planner would scan the team's whole index range and filter it; the join looks each
        // user up in the primary key.
        let query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} m USING UNNEST($2::BIGINT[]) AS u (user_id) \
             WHERE m.team_id = $1 AND m.user_id = u.user_id"
        )))
        .bind(self.team_id)
        .bind(users);
        self.send(query).await
    }
}

#[async_trait]
impl ChangeWriter for PgWriter {
    /// A sync of a large directory writes its rows a batch at a time rather than one statement
    /// per row.
    const BATCH_ROWS: usize = 1000;

    /// Taken from the batch's spare ids ([`SpareIds`]), drawn from the groups' sequence when
    /// too few are left (`groups_id_seq` and `users_id_seq` are the sequences PostgreSQL made
    /// for the identity columns; naming them, rather than asking `pg_get_serial_sequence` in
    /// the query, keeps the lookup out of the per-row work).
    async fn group_ids(&mut self, n: usize) -> StoreResult<Vec<GroupId>> {
        let draw = self.batched.spare.to_draw(n);
        if draw > 0 {
            let ids: Vec<GroupId> = sqlx::query_scalar(
                "SELECT ARRAY(SELECT nextval('groups_id_seq') FROM generate_series(1, $1))",
            )
            .bind(draw as i64)
            .fetch_one(self.conn().await?)
            .await
            .map_err(apply_error)?;
            self.batched.spare.add(ids);
        }
        Ok(self.batched.spare.take(n))
    }

    async fn insert_groups(&mut self, groups: &[NewGroup<'_>]) -> StoreResult<()> {
        let column = |get: fn(&NewGroup) -> i64| groups.iter().map(get).collect::<Vec<_>>();
        let text =
            |get: for<'g> fn(&'g NewGroup) -> &'g str| groups.iter().map(get).collect::<Vec<_>>();
        let query = sqlx::query(
            "INSERT INTO groups (id, team_id, parent_id, source, remote_id, name, sort_order, \
             is_valid, created_at, upd_at) \
             SELECT id, $1, parent_id, source, remote_id, name, sort_order, TRUE, created_at, \
             upd_at FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::TEXT[], $6::TEXT[], \
             $7::BIGINT[], $8::BIGINT[], $9::BIGINT[]) \
             AS g (id, parent_id, source, remote_id, name, sort_order, created_at, upd_at)",
        )
        .bind(self.team_id)
        .bind(column(|new| new.id.get()))
        .bind(column(|new| new.parent_id.get()))
        .bind(column(|new| new.group.source.code()))
        .bind(text(|new| &new.group.remote_id))
        .bind(text(|new| &new.group.name))
        .bind(column(|new| new.group.order))
        .bind(column(|new| new.group.created_at))
        .bind(column(|new| new.group.upd_at));
        self.send(query).await
    }

    async fn update_group(&mut self, group: &Group, parent_id: GroupId) -> StoreResult<()> {
        self.send(shared::update_group(self.team_id, group, parent_id))
            .await
    }

    /// At most three statements per run.
    async fn put_members(&mut self, members: &[PlacedMember<'_>], kept: Kept) -> StoreResult<()> {
        let mut placed_users: Vec<UserId> = Vec::new();
        let mut placed_groups: Vec<GroupId> = Vec::new();
        // The members whose memberships stay as they are.
        let mut unmoved: HashSet<UserId> = HashSet::new();
        for placed in members {
            let user_id = placed.member.user_id;
            match &placed.groups {
                Some(groups) => {
                    placed_users.extend(groups.iter().map(|_| user_id));
                    placed_groups.extend_from_slice(groups);
                }
                None => {
                    unmoved.insert(user_id);
                }
            }
        }
        if self
            .all_fresh(members.iter().map(|placed| placed.member.user_id))
            .await?
        {
            return self
                .insert_fresh(members, placed_users, placed_groups)
                .await;
        }
        // Which of the users were members already: only their old memberships need deleting.
        // In a first sync none were, and the delete would be a join against a table this very
        // transaction is filling, which has no statistics yet and gets planned as a scan. A
        // row version that an upsert inserted has no xmax; one it updated carries the updater's.
        let columns = MemberColumns::of(members.iter().map(|placed| placed.member));
        let replaced: Vec<Option<UserId>> = columns
            .bind(
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "{INSERT_MEMBERS}{} RETURNING CASE WHEN xmax = 0 THEN NULL ELSE user_id END",
                    shared::rewrite_member(kept)
                ))),
                self.team_id,
                self.now,
            )
            .fetch_all(self.conn().await?)
            .await
            .map_err(apply_error)?;
        let replaced: Vec<UserId> = replaced
            .into_iter()
            .flatten()
            .filter(|user_id| !unmoved.contains(user_id))
            .collect();
        if !replaced.is_empty() {
            // Only the memberships no longer wanted go; the others (all but one when a member
            // joins one more group) stay, and the insert below skips them.
            let query = sqlx::query(
                "DELETE FROM memberships m USING UNNEST($2::BIGINT[]) AS u (user_id) \
                 WHERE m.team_id = $1 AND m.user_id = u.user_id AND NOT EXISTS \
                 (SELECT 1 FROM UNNEST($3::BIGINT[], $4::BIGINT[]) AS p (user_id, group_id) \
                 WHERE p.user_id = m.user_id AND p.group_id = m.group_id)",
            )
            .bind(self.team_id)
            .bind(replaced)
            .bind(&placed_users)
            .bind(&placed_groups);
            self.send(query).await?;
        }
        self.insert_memberships(placed_users, placed_groups, " ON CONFLICT DO NOTHING")
            .await
    }

    /// One statement: the members' upsert, and the memberships gained and lost, each one
    /// primary-key lookup whatever the member's other groups.
    async fn step_members(&mut self, members: &[SteppedMember<'_>]) -> StoreResult<()> {
        self.touch(members.iter().map(|stepped| stepped.member.user_id));
        let memberships = |step: GroupStep| -> (Vec<UserId>, Vec<GroupId>) {
            members
                .iter()
                .filter(|stepped| stepped.step == step)
                .map(|stepped| (stepped.member.user_id, stepped.group))
                .unzip()
        };
        let (join_users, join_groups) = memberships(GroupStep::Join);
        let (leave_users, leave_groups) = memberships(GroupStep::Leave);
        let columns = MemberColumns::of(members.iter().map(|stepped| stepped.member));
        let query = columns
            .bind::<i64>(
                sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "WITH upserted AS ({INSERT_MEMBERS}{}), \
                     joined AS (INSERT INTO memberships (team_id, user_id, group_id) \
                     SELECT $1, user_id, group_id FROM UNNEST($8::BIGINT[], $9::BIGINT[]) \
                     AS p (user_id, group_id) ON CONFLICT DO NOTHING), \
                     left_ AS (DELETE FROM memberships m \
                     USING UNNEST($10::BIGINT[], $11::BIGINT[]) AS p (user_id, group_id) \
                     WHERE m.team_id = $1 AND m.user_id = p.user_id AND m.group_id = p.group_id) \
                     SELECT 0::BIGINT",
                    shared::STEP_MEMBER
                ))),
                self.team_id,
                self.now,
            )
            .bind(join_users)
            .bind(join_groups)
            .bind(leave_users)
            .bind(leave_groups);
        self.send(query).await
    }

    /// Memberships first: the table has no foreign key to cascade from (see the migrations).
    async fn remove_members(&mut self, users: &[UserId]) -> StoreResult<()> {
        self.delete_users("memberships", users).await?;
        self.delete_users("members", users).await
    }

    /// One statement over arrays per 50,000 events.
    const BATCH_EVENTS: usize = 50_000;

    fn last_seq(&self) -> i64 {
        self.team.last_seq
    }

    /// Members new to a team without any are inserted without `ON CONFLICT` ([`Fresh`]).
    fn large_write(&mut self) {
        self.fresh = Fresh::Unknown;
        self.large = true;
    }

    async fn flush(&mut self) -> StoreResult<()> {
        self.conn().await.map(drop)
    }

    /// A small write's events are held by the batch and inserted with the rest of its events
    /// before the commit ([`HeldEvents`](super::batched::HeldEvents)); a large write's are
    /// sent now.
    async fn insert_events(
        &mut self,
        first_seq: i64,
        actor: &Actor,
        events: &[NewEvent],
    ) -> StoreResult<()> {
        if !self.large {
            let (team_id, now) = (self.team_id, self.now);
            self.batched
                .events
                .hold(team_id, first_seq, now, actor, events);
            return Ok(());
        }
        let text = |get: fn(&NewEvent) -> Option<&str>| events.iter().map(get).collect::<Vec<_>>();
        let query = sqlx::query(
            "WITH write AS (INSERT INTO event_writes \
             (team_id, first_seq, time, actor_kind, appid, request_id) \
             VALUES ($1, $2, $3, $4, $5, $6)) \
             INSERT INTO events (team_id, seq, type, object_kind, object_id, remote_id, before, \
             after) \
             SELECT $1, $2 + e.n - 1, e.type, e.object_kind, e.object_id, e.remote_id, \
             e.before, e.after \
             FROM UNNEST($7::TEXT[], $8::TEXT[], $9::BIGINT[], $10::TEXT[], $11::TEXT[], \
             $12::TEXT[]) WITH ORDINALITY \
             AS e (type, object_kind, object_id, remote_id, before, after, n)",
        )
        .bind(self.team_id)
        .bind(first_seq)
        .bind(self.now)
        .bind(actor.kind.as_str())
        .bind(actor.appid.as_deref())
        .bind(actor.request_id.as_deref())
        .bind(text(|e| Some(e.event_type)))
        .bind(text(|e| Some(e.object_kind)))
        .bind(events.iter().map(|e| e.object_id).collect::<Vec<_>>())
        .bind(text(|e| e.remote_id.as_deref()))
        .bind(text(|e| e.before.as_deref()))
        .bind(text(|e| e.after.as_deref()));
        self.send(query).await
    }
}
