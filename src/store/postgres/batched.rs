//! What a PostgreSQL batch of directory writes keeps from one write to the next
//! ([`BackendDirectory::Known`](crate::store::backend::BackendDirectory::Known)): the versions
//! of the teams it wrote, whose bumps it holds for the commit ([`HeldVersions`]), group ids
//! drawn ahead ([`SpareIds`]) and its writes' events, inserted by one statement just before the
//! commit ([`HeldEvents`]). Each spares a small write a round trip to the database, which is
//! what a team's writes wait for one after the other: a single group create went from five
//! round trips to two, and a team's later create in the batch, checked here and run without a
//! savepoint of its own, to one (docs/BENCHMARKS.md, "PostgreSQL: fewer round trips per write",
//! "PostgreSQL: a team's writes checked in memory" and "PostgreSQL: a team's later writes
//! without a savepoint").

use std::collections::{HashSet, VecDeque};

use super::{PostgresStore, apply_error};
use crate::domain::events::{Actor, NewEvent};
use crate::domain::values::{GroupId, TeamId};
use crate::store::StoreResult;
use crate::store::backend::{TeamVersion, TeamVersions, Tx};

/// What a batch keeps between its writes.
#[derive(Debug, Default)]
pub(crate) struct Batched {
    pub(super) versions: HeldVersions,
    pub(super) spare: SpareIds,
    pub(super) events: HeldEvents,
}

/// The versions and event numbers of the teams a batch wrote ([`TeamVersions`]): a team's
/// first write in the batch is checked and bumped by the database, which locks the team's row
/// until the commit; its next writes are checked here, and their bumps held until
/// [`HeldVersions::store`] writes the last of each team, just before the commit or before a
/// write that reads the team's row itself (a sync).
#[derive(Debug, Default)]
pub(crate) struct HeldVersions {
    pub(super) teams: TeamVersions,
    /// The teams whose row is behind `teams`.
    behind: HashSet<TeamId>,
}

impl HeldVersions {
    /// Team `team_id` is at `team` after a write that stands; `held`: its bump is not in the
    /// database yet.
    pub(super) fn record(&mut self, team_id: TeamId, team: TeamVersion, held: bool) {
        self.teams.record(team_id, team);
        if held {
            self.behind.insert(team_id);
        }
    }

    /// Write the held bumps, and forget every team: a write after this one asks the database.
    pub(super) async fn store(&mut self, tx: &mut Tx<PostgresStore>) -> StoreResult<()> {
        let teams = std::mem::take(&mut self.teams);
        let behind = std::mem::take(&mut self.behind);
        if behind.is_empty() {
            return Ok(());
        }
        let (mut ids, mut versions, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
        for team_id in behind {
            if let Some(team) = teams.get(team_id) {
                ids.push(team_id.get());
                versions.push(team.version);
                seqs.push(team.last_seq);
            }
        }
        sqlx::query(
            "UPDATE teams SET version = v.version, event_seq = v.seq \
             FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[]) AS v (id, version, seq) \
             WHERE teams.id = v.id",
        )
        .bind(ids)
        .bind(versions)
        .bind(seqs)
        .execute(&mut **tx)
        .await
        .map_err(apply_error)?;
        Ok(())
    }
}

/// Group ids a batch drew from the sequence and has not used yet, ascending. A batch that
/// draws again draws as many more as it drew before, up to [`SpareIds::MOST_AHEAD`] beyond what
/// it needs: 32 single creates in one batch draw 6 times, and a batch that creates one group
/// draws one id. Ids left when the batch ends are never used (a sequence has gaps anyway: a
/// rolled-back write does not give its ids back).
#[derive(Debug, Default)]
pub(crate) struct SpareIds {
    ids: VecDeque<GroupId>,
    /// How many the batch has drawn.
    drawn: usize,
}

impl SpareIds {
    /// The most ids drawn beyond what a write needs.
    const MOST_AHEAD: usize = 64;

    /// How many ids to draw for `n` more (none if enough are spare).
    pub(super) fn to_draw(&self, n: usize) -> usize {
        match n.checked_sub(self.ids.len()) {
            None | Some(0) => 0,
            Some(missing) => missing.max(self.drawn.min(Self::MOST_AHEAD)),
        }
    }

    /// Keep `drawn`, which came from the sequence after every id drawn before.
    pub(super) fn add(&mut self, mut drawn: Vec<GroupId>) {
        drawn.sort_unstable();
        self.drawn += drawn.len();
        self.ids.extend(drawn);
    }

    /// The next `n` ids, ascending; [`SpareIds::to_draw`] of them were drawn first.
    pub(super) fn take(&mut self, n: usize) -> Vec<GroupId> {
        self.ids.drain(..n.min(self.ids.len())).collect()
    }
}

/// The events of a batch's small writes, numbered, held until the commit. A write whose
/// savepoint is undone takes its events back ([`HeldEvents::truncate`]); the commit inserts the
/// rest with one statement ([`HeldEvents::insert`]), in the same transaction, so the feed sees
/// them exactly when it sees their changes. A large write (a sync) inserts its own as it goes,
/// with a statement of its own ([`ChangeWriter::insert_events`] in `directory.rs`). Either
/// statement stores a write's time and actor once, in `event_writes`.
///
/// [`ChangeWriter::insert_events`]: crate::store::apply::ChangeWriter::insert_events
#[derive(Debug, Default)]
pub(crate) struct HeldEvents {
    writes: Vec<HeldWrite>,
}

/// Events of one write, numbered from `first_seq` on.
#[derive(Debug)]
struct HeldWrite {
    team_id: TeamId,
    first_seq: i64,
    time: i64,
    actor: Actor,
    events: Vec<NewEvent>,
}

impl HeldEvents {
    /// How many writes' events are held.
    pub(super) fn len(&self) -> usize {
        self.writes.len()
    }

    /// Hold `events` of team `team_id`, numbered from `first_seq` on.
    pub(super) fn hold(
        &mut self,
        team_id: TeamId,
        first_seq: i64,
        time: i64,
        actor: &Actor,
        events: &[NewEvent],
    ) {
        self.writes.push(HeldWrite {
            team_id,
            first_seq,
            time,
            actor: actor.clone(),
            events: events.to_vec(),
        });
    }

    /// Forget the events of the writes held after the first `len` (a write that does not
    /// stand).
    pub(super) fn truncate(&mut self, len: usize) {
        self.writes.truncate(len);
    }

    /// Insert every event held, each write's time and actor once, and hold none.
    pub(super) async fn insert(&mut self, tx: &mut Tx<PostgresStore>) -> StoreResult<()> {
        if self.writes.is_empty() {
            return Ok(());
        }
        let writes = std::mem::take(&mut self.writes);
        let write_column = |get: fn(&HeldWrite) -> i64| writes.iter().map(get).collect::<Vec<_>>();
        let write_text =
            |get: fn(&HeldWrite) -> Option<&str>| writes.iter().map(get).collect::<Vec<_>>();
        let events = || {
            writes.iter().flat_map(|write| {
                (write.first_seq..)
                    .zip(&write.events)
                    .map(|(seq, event)| (write.team_id, seq, event))
            })
        };
        let text = |get: fn(&NewEvent) -> Option<&str>| {
            events().map(|(_, _, event)| get(event)).collect::<Vec<_>>()
        };
        sqlx::query(
            "WITH write AS (INSERT INTO event_writes \
             (team_id, first_seq, time, actor_kind, appid, request_id) \
             SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], \
             $5::TEXT[], $6::TEXT[])) \
             INSERT INTO events (team_id, seq, type, object_kind, object_id, remote_id, before, \
             after) \
             SELECT * FROM UNNEST($7::BIGINT[], $8::BIGINT[], $9::TEXT[], $10::TEXT[], \
             $11::BIGINT[], $12::TEXT[], $13::TEXT[], $14::TEXT[])",
        )
        .bind(write_column(|write| write.team_id.get()))
        .bind(write_column(|write| write.first_seq))
        .bind(write_column(|write| write.time))
        .bind(write_text(|write| Some(write.actor.kind.as_str())))
        .bind(write_text(|write| write.actor.appid.as_deref()))
        .bind(write_text(|write| write.actor.request_id.as_deref()))
        .bind(
            events()
                .map(|(team_id, _, _)| team_id.get())
                .collect::<Vec<_>>(),
        )
        .bind(events().map(|(_, seq, _)| seq).collect::<Vec<_>>())
        .bind(text(|event| Some(event.event_type)))
        .bind(text(|event| Some(event.object_kind)))
        .bind(
            events()
                .map(|(_, _, event)| event.object_id)
                .collect::<Vec<_>>(),
        )
        .bind(text(|event| event.remote_id.as_deref()))
        .bind(text(|event| event.before.as_deref()))
        .bind(text(|event| event.after.as_deref()))
        .execute(&mut **tx)
        .await
        .map_err(apply_error)?;
        Ok(())
    }
}
