//! Directory sync (§8): make a directory equal to a snapshot in one transaction.
//!
//! The snapshot is planned twice at most: once to validate it and answer a dry run (users not
//! registered yet get stand-in ids), and once, after the missing users are registered, under the
//! team's write gate to produce the batch that is committed. Registering users is idempotent and
//! touches no directory, so a refused or failed sync leaves no trace in any directory.
//!
//! A sync holds a [`SyncSlot`] from before its snapshot is read until it is committed: at most
//! `max_syncs` in the process and `max_syncs_per_team` per team. One more is refused at once
//! (`sync_in_progress`), never queued, so a tenant cannot hold threads or memory by piling up
//! syncs, and, the team limit being below the process limit, cannot fill every slot alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};

use super::directories::ChunkedWrite;
use super::quotas::{self, Growth, TeamQuota};
use super::{Service, ServiceError, ServiceResult, unix_now};
use crate::domain::access::Caller;
use crate::domain::directory::{Change, Directory, Staging};
use crate::domain::events::{self, ActorKind, Draft};
use crate::domain::sync::{
    self, MemberState, Snapshot, SyncOptions, SyncPlan, SyncRefusal, SyncReport,
};
use crate::domain::values::{GroupId, TeamId, UserId};
use crate::metrics::SyncEnd;
use crate::store::{ChangeChunks, NewUser, Store, TeamRecord};

/// One sync under way: who asked, the directory, the snapshot, how, and since when.
struct SyncRun<'a> {
    caller: &'a Caller,
    team: TeamRecord,
    snapshot: &'a Snapshot,
    options: SyncOptions,
    started: Instant,
}

/// The report of a sync, with the time it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    pub report: SyncReport,
    pub dry_run: bool,
    pub elapsed_ms: u64,
}

/// The syncs in flight, by team.
#[derive(Debug, Default)]
struct InFlight {
    total: usize,
    teams: HashMap<TeamId, usize>,
}

/// The process's sync slots.
#[derive(Debug, Clone)]
pub(super) struct SyncSlots {
    max: usize,
    per_team: usize,
    in_flight: Arc<Mutex<InFlight>>,
}

impl SyncSlots {
    pub(super) fn new(max: usize, per_team: usize) -> SyncSlots {
        SyncSlots {
            max,
            per_team,
            in_flight: Arc::default(),
        }
    }
}

/// The right to run one sync of one team; given back when dropped.
#[derive(Debug)]
pub struct SyncSlot {
    team_id: TeamId,
    slots: SyncSlots,
}

impl SyncSlot {
    pub fn team_id(&self) -> TeamId {
        self.team_id
    }
}

impl Drop for SyncSlot {
    fn drop(&mut self) {
        let mut in_flight = self
            .slots
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        in_flight.total = in_flight.total.saturating_sub(1);
        if let Some(count) = in_flight.teams.get_mut(&self.team_id) {
            *count -= 1;
            if *count == 0 {
                in_flight.teams.remove(&self.team_id);
            }
        }
    }
}

impl Service {
    /// A slot for a sync of `team_id` if `caller` may sync it and one is free; taken before
    /// the snapshot is read and held until the sync ends.
    pub async fn sync_slot(&self, caller: &Caller, team_id: TeamId) -> ServiceResult<SyncSlot> {
        self.team_for(caller, team_id).await?;
        let slots = &self.sync_slots;
        let mut in_flight = slots
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let team = in_flight.teams.get(&team_id).copied().unwrap_or(0);
        let busy = if team >= slots.per_team {
            Some("a sync of this directory is in progress; retry when it has ended")
        } else if in_flight.total >= slots.max {
            Some("the server runs as many syncs as it allows; retry later")
        } else {
            None
        };
        if let Some(reason) = busy {
            if let Some(metrics) = &self.metrics {
                metrics.sync(SyncEnd::InProgress, None);
            }
            return Err(ServiceError::SyncInProgress(reason));
        }
        in_flight.total += 1;
        in_flight.teams.insert(team_id, team + 1);
        Ok(SyncSlot {
            team_id,
            slots: slots.clone(),
        })
    }

    /// Sync the slot's directory to `snapshot`.
    pub async fn sync_directory(
        &self,
        caller: &Caller,
        slot: &SyncSlot,
        snapshot: &Snapshot,
        options: SyncOptions,
    ) -> ServiceResult<SyncOutcome> {
        let started = Instant::now();
        let synced = async {
            let run = SyncRun {
                caller,
                team: self.team_for(caller, slot.team_id).await?,
                snapshot,
                options,
                started,
            };
            self.run_sync(&run).await
        }
        .await;
        if let Some(metrics) = &self.metrics {
            let end = match &synced {
                Ok(outcome) if outcome.dry_run => SyncEnd::DryRun,
                Ok(_) => SyncEnd::Applied,
                Err(ServiceError::Store(_) | ServiceError::Busy) => SyncEnd::Failed,
                Err(_) => SyncEnd::Refused,
            };
            let size = (snapshot.group_count(), snapshot.member_count());
            metrics.sync(end, Some((started.elapsed(), size.0, size.1)));
        }
        synced
    }

    async fn run_sync(&self, run: &SyncRun<'_>) -> ServiceResult<SyncOutcome> {
        let SyncRun {
            caller,
            ref team,
            snapshot,
            options,
            started,
        } = *run;
        let team_id = team.access.team_id;
        let max_depth = self.settings.max_group_depth;
        // Three independent reads of millions of rows each: run them side by side (the
        // directory read is a no-op when this process has the current copy already).
        let (known, members, ()) = tokio::try_join!(
            async { Ok(self.store.app_user_ids(&caller.appid).await?) },
            Members::read(&*self.store, team_id),
            self.directories.read(&*self.store, team, |_| Ok(())),
        )?;
        let (mut users, missing) = snapshot_users(snapshot, known);
        tracing::info!(
            team_id = team_id.get(),
            members = members.by_user.len(),
            new_users = missing.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "sync: read the stored users, members and directory"
        );
        let now = unix_now();
        if !options.dry_run && missing.is_empty() {
            // Every user exists: decide once, under the write gate.
            return self.commit_sync(run, &users, members, None).await;
        }
        let quota = self.team_quota(team).await?;
        let checked = self
            .directories
            .read(&*self.store, team, |d| {
                Ok(sync::plan(
                    d,
                    snapshot,
                    options,
                    &users,
                    &members.by_user,
                    max_depth,
                    now,
                )
                .map(|plan| {
                    let within_quota = quota.check(d, Growth::from(plan.report()));
                    ((d.version(), plan), within_quota)
                }))
            })
            .await?;
        let (planned, within_quota) = checked.map_err(ServiceError::SyncRefused)?;
        within_quota
            .inspect_err(|refusal| quotas::count_refusal(self.metrics.as_ref(), refusal))?;
        tracing::info!(
            team_id = team_id.get(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "sync: the snapshot is valid"
        );
        if options.dry_run {
            return Ok(SyncOutcome {
                report: planned.1.report().clone(),
                dry_run: true,
                elapsed_ms: started.elapsed().as_millis() as u64,
            });
        }
        self.register(caller, snapshot, missing, &mut users, now)
            .await?;
        // The plan stands if nothing changed meanwhile, and if it was made with the members of
        // its directory (both are read side by side, each at the version it finds).
        let prior = (planned.0 == members.version).then_some(planned);
        self.commit_sync(run, &users, members, prior).await
    }

    /// Register the users of the snapshot's members at the places `missing` (openids the app
    /// has not registered yet) and put their ids at those places of `users`.
    async fn register(
        &self,
        caller: &Caller,
        snapshot: &Snapshot,
        mut missing: Vec<u32>,
        users: &mut [UserId],
        now: i64,
    ) -> ServiceResult<()> {
        // In openid order, so that the users' ids ascend with the openids: each table and
        // index the registration fills (by id, by openid) then grows at one place instead of
        // at a random page per row, as snapshot order would with openids that follow no order
        // (docs/SYNC.md, "Speed"). In chunks, as many at once as the store can use
        // (`registrations_at_once`; the chunks hold no openid in common, so they never wait for
        // each other): the users a chunk registers are borrowed from the snapshot, and only
        // those of the chunks under way at a time.
        snapshot.sort_by_openid(&mut missing);
        let missing = &missing;
        let registrations = (0..missing.len())
            .step_by(REGISTER_CHUNK)
            .map(|start| async move {
                let chunk = &missing[start..missing.len().min(start + REGISTER_CHUNK)];
                let new: Vec<NewUser> = chunk
                    .iter()
                    .map(|n| {
                        let member = snapshot.member(*n as usize);
                        NewUser {
                            openid: member.openid,
                            nickname: member.nickname,
                            avatar: member.avatar,
                        }
                    })
                    .collect();
                let registered = self.store.register_users(&caller.appid, &new, now).await?;
                ServiceResult::Ok((chunk, registered))
            });
        let mut registrations =
            futures_util::stream::iter(registrations).buffered(self.store.registrations_at_once());
        while let Some((chunk, registered)) = registrations.try_next().await? {
            for (n, user_id) in chunk.iter().zip(registered) {
                users[*n as usize] = user_id;
            }
        }
        Ok(())
    }

    /// Decide the snapshot on a current copy under the team's write gate and commit it, with
    /// an event per object changed and a summary. `prior`: the plan made before the users were
    /// registered, with the version of the copy it was made on, used again if the copy is still
    /// at that version.
    async fn commit_sync(
        &self,
        run: &SyncRun<'_>,
        users: &[UserId],
        members: Members,
        prior: Option<(i64, SyncPlan)>,
    ) -> ServiceResult<SyncOutcome> {
        let write = SyncWrite {
            prior: Mutex::new(prior),
            team_id: run.team.access.team_id,
            snapshot: run.snapshot,
            options: run.options,
            users,
            members: Mutex::new(Arc::new(members)),
            max_depth: self.settings.max_group_depth,
            now: unix_now(),
            quota: self.team_quota(&run.team).await?,
            started: run.started,
        };
        let actor = run.caller.actor(ActorKind::Sync);
        let planned = self
            .directories
            .write_chunked(&*self.store, &run.team, &actor, &write)
            .await?;
        Ok(SyncOutcome {
            report: planned.map_err(ServiceError::SyncRefused)?.report().clone(),
            dry_run: false,
            elapsed_ms: run.started.elapsed().as_millis() as u64,
        })
    }
}

/// The user of each of the snapshot's members, by place, with `known` (every openid the app
/// registered); openids without a user yet get stand-in ids (negative, never stored) and are
/// listed, by place, to be registered.
fn snapshot_users(snapshot: &Snapshot, known: Vec<(String, UserId)>) -> (Vec<UserId>, Vec<u32>) {
    let known: HashMap<String, UserId> = known.into_iter().collect();
    let mut users = Vec::with_capacity(snapshot.member_count());
    let mut missing = Vec::new();
    for (n, member) in snapshot.members().enumerate() {
        match known.get(member.openid) {
            Some(user_id) => users.push(*user_id),
            None => {
                users.push(UserId::new(-(n as i64) - 1));
                missing.push(u32::try_from(n).unwrap_or(u32::MAX));
            }
        }
    }
    (users, missing)
}

/// The stored details of a team's members, as of the team's `version`: what a sync compares
/// its members with, so they must be of the directory the sync is decided on.
struct Members {
    version: i64,
    by_user: HashMap<UserId, MemberState>,
}

impl Members {
    async fn read(store: &dyn Store, team_id: TeamId) -> ServiceResult<Members> {
        let stored = store
            .member_states(team_id)
            .await?
            .ok_or(ServiceError::TeamNotFound)?;
        Ok(Members {
            version: stored.version,
            by_user: stored.states.into_iter().collect(),
        })
    }
}

/// Users registered per transaction: a sync registers up to millions.
const REGISTER_CHUNK: usize = 50_000;

/// Member changes made, written and applied to the copy at a time.
const WRITE_CHUNK: usize = 10_000;

/// A sync as a [`ChunkedWrite`]: planned on the current copy, its changes made a chunk at a
/// time as they are written.
struct SyncWrite<'a> {
    team_id: TeamId,
    snapshot: &'a Snapshot,
    options: SyncOptions,
    users: &'a [UserId],
    /// Read before the gate, and again under it if the directory moved on
    /// ([`ChunkedWrite::catch_up`]).
    members: Mutex<Arc<Members>>,
    max_depth: u32,
    now: i64,
    quota: TeamQuota,
    started: Instant,
    /// A plan made earlier, with the version of the copy it was made on.
    prior: Mutex<Option<(i64, SyncPlan)>>,
}

impl SyncWrite<'_> {
    fn members(&self) -> Arc<Members> {
        Arc::clone(&self.members.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl ChunkedWrite for SyncWrite<'_> {
    type Plan = Result<SyncPlan, SyncRefusal>;

    /// A member written meanwhile (by the API, SCIM or another sync) must be compared as it is
    /// now: taken for unchanged, the sync would not write it; placed from its old details, a
    /// member the snapshot does not name would lose the write.
    async fn catch_up(&self, store: &dyn Store, version: i64) -> ServiceResult<bool> {
        if self.members().version == version {
            return Ok(true);
        }
        tracing::info!(
            team_id = self.team_id.get(),
            "sync: the directory changed since its members were read; reading them again"
        );
        let members = Members::read(store, self.team_id).await?;
        let current = members.version == version;
        *self.members.lock().unwrap_or_else(PoisonError::into_inner) = Arc::new(members);
        Ok(current)
    }

    fn decide(&self, directory: &Directory) -> ServiceResult<Self::Plan> {
        let prior = self
            .prior
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((version, plan)) = prior
            && version == directory.version()
        {
            return Ok(Ok(plan));
        }
        tracing::info!(
            team_id = self.team_id.get(),
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "sync: planning on the current directory"
        );
        let planned = sync::plan(
            directory,
            self.snapshot,
            self.options,
            self.users,
            &self.members().by_user,
            self.max_depth,
            self.now,
        );
        if let Ok(plan) = &planned {
            self.quota.check(directory, Growth::from(plan.report()))?;
        }
        Ok(planned)
    }

    fn staging(&self, plan: &Self::Plan) -> Option<Staging> {
        Some(plan.as_ref().ok()?.staging())
    }

    fn chunks<'a>(
        &'a self,
        plan: &'a Self::Plan,
        copy: &'a mut Directory,
    ) -> Option<Box<dyn ChangeChunks + 'a>> {
        let plan = plan.as_ref().ok().filter(|plan| !plan.is_empty())?;
        tracing::info!(
            team_id = self.team_id.get(),
            elapsed_ms = self.started.elapsed().as_millis() as u64,
            "sync: writing the changes"
        );
        let report = plan.report();
        copy.reserve(
            usize::try_from(report.groups_created).unwrap_or(0),
            usize::try_from(report.members_added).unwrap_or(0),
        );
        let summary = serde_json::to_value(plan.report())
            .ok()
            .map(events::sync_summary);
        Some(Box::new(SyncChunks {
            changes: Box::new(plan.chunks(self.snapshot, self.users, WRITE_CHUNK)),
            copy,
            profiles: self.members(),
            summary,
        }))
    }
}

/// A sync's changes a chunk at a time, with their events made from the copy they were decided
/// on, to which each chunk is applied once written (a member is in one chunk only, every group
/// change in the first: the events of a chunk are those of the whole batch).
struct SyncChunks<'a> {
    changes: Box<dyn Iterator<Item = Vec<Change>> + Send + 'a>,
    copy: &'a mut Directory,
    profiles: Arc<Members>,
    /// The sync's own event, after every other.
    summary: Option<Draft>,
}

impl ChangeChunks for SyncChunks<'_> {
    fn next_chunk(&mut self) -> Option<(Vec<Change>, Vec<Draft>)> {
        match self.changes.next() {
            Some(changes) => {
                let drafts = events::derive(self.copy, &changes, &self.profiles.by_user);
                Some((changes, drafts))
            }
            None => Some((Vec::new(), vec![self.summary.take()?])),
        }
    }

    fn written(&mut self, changes: Vec<Change>, created: &[GroupId]) {
        let version = self.copy.version();
        self.copy.apply(&changes, created, version);
    }
}

impl Service {
    /// `contactsd sync`: the same sync as the API, on behalf of the team's own app (whose
    /// openids the snapshot names).
    pub async fn sync_as_team_app(
        &self,
        team_id: TeamId,
        snapshot: &Snapshot,
        options: SyncOptions,
    ) -> ServiceResult<SyncOutcome> {
        let caller = self.team_app(team_id).await?;
        let slot = self.sync_slot(&caller, team_id).await?;
        self.sync_directory(&caller, &slot, snapshot, options).await
    }

    /// The team's own app as a caller.
    async fn team_app(&self, team_id: TeamId) -> ServiceResult<Caller> {
        let team = self
            .store
            .team(team_id)
            .await?
            .ok_or(ServiceError::TeamNotFound)?;
        let org_id = team.access.org_id;
        let appid = self
            .store
            .team_appid(org_id)
            .await?
            .ok_or(ServiceError::InvalidCredential)?;
        Ok(Caller {
            appid,
            scope: crate::domain::access::AppScope::Team(org_id),
            request_id: None,
        })
    }
}
