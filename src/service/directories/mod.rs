//! The process-local cache of directories, kept equal to the database by version.
//!
//! Every contacts call already reads the team's row (for the tenant check), which carries the
//! team's version. A cached [`Directory`] at that version or newer answers at once; an older one
//! is reloaded. Writes are decided on the cached copy under a per-team gate and committed with
//! optimistic concurrency, so several processes on one database stay correct: a process that
//! lost a race reloads and decides again. Decided writes are committed in batches by the
//! [`Committer`]: a team's next write is decided on a copy that already holds the writes
//! waiting for their commit (see "Write path" in docs/DESIGN.md).
//!
//! The cache has a memory budget: each copy's size is estimated in O(1)
//! ([`Directory::estimated_bytes`]), and past the budget the least recently used copies are
//! dropped (never one being loaded or written, never the one just loaded) and loaded again on
//! their next use. A single directory larger than the whole budget is still served.
//!
//! A write too large to hold as one list of changes (a sync) takes a path of its own
//! ([`chunked`]).

mod chunked;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex as AsyncMutex, Notify, oneshot};

pub(super) use chunked::ChunkedWrite;

use super::committer::{Committer, Job, Ticket};
use super::{ServiceError, ServiceResult, quotas, unix_now};
use crate::domain::RuleError;
use crate::domain::access::Caller;
use crate::domain::directory::{self, Change, Directory};
use crate::domain::events::{self, Actor, ActorKind, PriorProfiles};
use crate::domain::values::{GroupId, TeamId};
use crate::metrics::Metrics;
use crate::store::scim::ScimWrite;
use crate::store::{Applied, Store, StoreError, TeamRecord};

/// How often a write is decided again after losing a race with another process.
const WRITE_ATTEMPTS: u32 = 24;
/// The largest copy a sync leaves readable while it writes (see [`Slot::take_for_write`]):
/// about 100,000 members with their groups.
const KEPT_FOR_READERS: usize = 16 << 20;
/// Groups a listing may examine on a request worker ([`Directories::read_weighed`]): a few
/// milliseconds of work.
const HEAVY_READ: usize = 20_000;

/// A random pause before deciding again, growing with the attempts, so that the process that
/// keeps losing (it must reload every time) gets its turn.
async fn back_off(attempt: u32) {
    let mut noise = [0u8; 2];
    let jitter = match getrandom::fill(&mut noise) {
        Ok(()) => u64::from(u16::from_le_bytes(noise)),
        Err(_) => 0,
    };
    let ceiling_ms = 2u64 << attempt.min(6);
    tokio::time::sleep(std::time::Duration::from_micros(
        jitter % (ceiling_ms * 1000),
    ))
    .await;
}

pub(super) struct Slot {
    /// Serializes loads, writes and the eviction of this team's copy within the process; a
    /// write holds it until its changes are on the copy.
    gate: Arc<AsyncMutex<()>>,
    /// Taken by a heavy read of the team ([`Directories::read_weighed`]): one at a time.
    heavy_reads: AsyncMutex<()>,
    directory: RwLock<Option<Directory>>,
    /// The estimated size of the copy (0 without one), part of `total`.
    bytes: AtomicUsize,
    /// The estimated size of every cached copy.
    total: Arc<AtomicUsize>,
    /// When the copy was last used, on the cache's clock.
    used: AtomicU64,
    /// Woken when this process commits a change of the team (callers waiting for events).
    pub(super) committed: Notify,
    /// Callers waiting on `committed`.
    waiting: AtomicUsize,
}

impl Slot {
    /// The copy, to read. The lock is waited for off the request workers: a heavy read of the
    /// team ([`Directories::read_weighed`]) can hold it for a while, and a write waiting behind
    /// it holds off the team's next readers too; a worker blocked on either would stall other
    /// teams' requests.
    fn read(&self) -> RwLockReadGuard<'_, Option<Directory>> {
        let read = || match self.directory.read() {
            Ok(guard) => guard,
            Err(_) => {
                // A panic while applying a change would leave a half-applied copy: drop it
                // and reload.
                self.replace(None);
                self.directory.clear_poison();
                self.directory.read().unwrap_or_else(|p| p.into_inner())
            }
        };
        match self.directory.try_read() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => off_the_workers(read),
            Err(TryLockError::Poisoned(_)) => read(),
        }
    }

    /// The copy, to change; the lock waited for off the request workers, as in
    /// [`Slot::read`].
    fn write(&self) -> RwLockWriteGuard<'_, Option<Directory>> {
        match self.directory.try_write() {
            Ok(guard) => guard,
            Err(TryLockError::WouldBlock) => {
                off_the_workers(|| self.directory.write().unwrap_or_else(|p| p.into_inner()))
            }
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        }
    }

    fn replace(&self, directory: Option<Directory>) {
        let mut guard = self.write();
        self.account(directory.as_ref());
        let old = std::mem::replace(&mut *guard, directory);
        drop(guard);
        // A large copy takes a while to free: not while readers wait for the lock.
        drop(old);
    }

    /// Record the size of the copy now held.
    fn account(&self, directory: Option<&Directory>) {
        let bytes = directory.map_or(0, Directory::estimated_bytes);
        let old = self.bytes.swap(bytes, Ordering::Relaxed);
        self.total.fetch_add(bytes, Ordering::Relaxed);
        self.total.fetch_sub(old, Ordering::Relaxed);
    }

    /// Drop the copy: the next use reloads it.
    pub(super) fn forget(&self) {
        self.replace(None);
    }

    /// The copy for a chunked write to apply its chunks to: a clone while the copy is at most
    /// [`KEPT_FOR_READERS`] bytes, so that the team's readers go on reading the old directory
    /// during the write; a larger copy is taken out (the next use waits for the gate, or
    /// reloads) rather than held twice.
    fn take_for_write(&self) -> Option<Directory> {
        // Cloned under the read lock, so that readers go on meanwhile.
        if let Some(directory) = self
            .read()
            .as_ref()
            .filter(|d| d.estimated_bytes() <= KEPT_FOR_READERS)
        {
            return Some(directory.clone());
        }
        let mut guard = self.write();
        self.account(None);
        guard.take()
    }

    /// Apply a write that is written but not yet committed to the copy it was decided on (at
    /// version `expected`); a copy at any other version is dropped instead. The user the write
    /// registered, if any, is named by the id it got.
    pub(super) fn speculate(&self, expected: i64, changes: &[Change], applied: &Applied) {
        let named = applied
            .registered
            .map(|user_id| directory::with_registered(changes, user_id));
        let changes = named.as_deref().unwrap_or(changes);
        let mut guard = self.write();
        let old = match guard.as_mut() {
            Some(directory) if directory.version() == expected => {
                directory.apply(changes, &applied.created, applied.version);
                None
            }
            _ => guard.take(),
        };
        self.account(guard.as_ref());
        drop(guard);
        drop(old);
    }

    fn is_fresh(&self, version: i64) -> bool {
        self.read().as_ref().is_some_and(|d| d.version() >= version)
    }
}

/// The cache of the directories this process has served lately.
pub(super) struct Directories {
    slots: Mutex<HashMap<TeamId, Arc<Slot>>>,
    /// Estimated bytes the copies may hold together.
    budget: usize,
    total: Arc<AtomicUsize>,
    /// A tick per use, for least-recently-used eviction.
    clock: AtomicU64,
    /// Callers of every team waiting for a commit ([`Directories::park`]).
    waiting: Arc<AtomicUsize>,
    /// Hits, loads, evictions and commits are counted here when metrics are on.
    metrics: Option<Arc<Metrics>>,
    committer: Committer,
    /// How long a writer waits for the committing task to take its job (another team's large
    /// write may hold it) before giving the job up as [`StoreError::Unavailable`]: the store's
    /// own wait for its write path ([`Store::write_wait`]).
    write_wait: Duration,
}

impl Directories {
    pub(super) fn new(budget: usize, store: Arc<dyn Store>) -> Directories {
        Directories {
            write_wait: store.write_wait(),
            committer: Committer::new(store),
            slots: Mutex::new(HashMap::new()),
            budget,
            total: Arc::new(AtomicUsize::new(0)),
            clock: AtomicU64::new(0),
            waiting: Arc::new(AtomicUsize::new(0)),
            metrics: None,
        }
    }

    pub(super) fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.committer.set_metrics(metrics.clone());
        self.metrics = Some(metrics);
    }

    /// Resolves at the next commit of any team in this process (registered at once, so a
    /// commit between this call and the await is not missed).
    pub(super) fn any_commit(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut notified = Box::pin(self.committer.any_commit.notified());
        notified.as_mut().enable();
        notified
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<TeamId, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The team's slot, marked as used now.
    fn slot(&self, team_id: TeamId) -> Arc<Slot> {
        let slot = self
            .slots()
            .entry(team_id)
            .or_insert_with(|| {
                Arc::new(Slot {
                    gate: Arc::new(AsyncMutex::new(())),
                    heavy_reads: AsyncMutex::new(()),
                    directory: RwLock::new(None),
                    bytes: AtomicUsize::new(0),
                    total: self.total.clone(),
                    used: AtomicU64::new(0),
                    committed: Notify::new(),
                    waiting: AtomicUsize::new(0),
                })
            })
            .clone();
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        slot.used.store(now, Ordering::Relaxed);
        slot
    }

    /// Estimated bytes of every cached copy.
    pub(super) fn cached_bytes(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Teams with a copy in memory.
    pub(super) fn cached_entries(&self) -> usize {
        self.slots()
            .values()
            .filter(|slot| slot.bytes.load(Ordering::Relaxed) > 0)
            .count()
    }

    /// Callers of every team waiting for a commit.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// A write's final refusal, counted.
    fn refused(&self, refusal: ServiceError) -> ServiceError {
        quotas::count_refusal(self.metrics.as_ref(), &refusal);
        refusal
    }

    fn count_hit(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.cache_hit();
        }
    }

    /// Under the team's gate, before deciding a write (its `attempt`): reload the copy when it
    /// is gone, older than the team record's `version`, or known to be `behind` the database,
    /// after a pause from the second attempt on. Answers whether the database was asked.
    ///
    /// Judged under the gate, not before it: another writer of the team may have loaded the
    /// copy meanwhile, and its change may now wait, uncommitted, in the open batch. A second
    /// load would read the committed state without it, and every write decided on that copy
    /// would fail its version check and reload again, until the batch commits (seen as
    /// hundreds of conflicts in the first second of a SCIM provisioning burst).
    async fn refresh(
        &self,
        store: &dyn Store,
        slot: &Slot,
        team: &TeamRecord,
        behind: bool,
        attempt: u32,
    ) -> ServiceResult<bool> {
        if !behind && slot.is_fresh(team.version) {
            return Ok(false);
        }
        if attempt > 0 {
            back_off(attempt).await;
        }
        self.reload(store, slot, team.access.team_id).await?;
        Ok(true)
    }

    async fn reload(&self, store: &dyn Store, slot: &Slot, team_id: TeamId) -> ServiceResult<()> {
        // The stale copy goes first: a large team is never held twice.
        slot.replace(None);
        let started = Instant::now();
        let directory = store
            .load_directory(team_id)
            .await?
            .ok_or(ServiceError::TeamNotFound)?;
        if let Some(metrics) = &self.metrics {
            metrics.cache_load(started.elapsed());
        }
        slot.replace(Some(directory));
        self.evict_over_budget(team_id);
        Ok(())
    }

    /// Drop least recently used copies until the cache is within its budget. `keep` (just
    /// loaded or written) stays, and so does any copy being loaded or written (its gate is
    /// held).
    fn evict_over_budget(&self, keep: TeamId) {
        if self.cached_bytes() <= self.budget {
            return;
        }
        let mut candidates: Vec<(u64, Arc<Slot>)> = self
            .slots()
            .iter()
            .filter(|(team_id, slot)| **team_id != keep && slot.bytes.load(Ordering::Relaxed) > 0)
            .map(|(_, slot)| (slot.used.load(Ordering::Relaxed), slot.clone()))
            .collect();
        candidates.sort_unstable_by_key(|(used, _)| *used);
        let mut evicted = 0;
        for (_, slot) in candidates {
            if self.cached_bytes() <= self.budget {
                break;
            }
            if let Ok(_gate) = slot.gate.try_lock() {
                slot.replace(None);
                evicted += 1;
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.cache_evictions(evicted);
        }
        // Slots without a copy that nobody is using are forgotten.
        self.slots().retain(|team_id, slot| {
            *team_id == keep
                || slot.bytes.load(Ordering::Relaxed) > 0
                || Arc::strong_count(slot) > 1
        });
        tracing::debug!(
            evicted,
            cached_bytes = self.cached_bytes(),
            "directory cache over budget"
        );
    }

    /// Answer `read` from the directory of `team`, at the team's version or newer.
    pub(super) async fn read<R>(
        &self,
        store: &dyn Store,
        team: &TeamRecord,
        read: impl FnOnce(&Directory) -> Result<R, RuleError>,
    ) -> ServiceResult<R> {
        let team_id = team.access.team_id;
        let slot = self.slot(team_id);
        {
            let guard = slot.read();
            if let Some(directory) = guard.as_ref().filter(|d| d.version() >= team.version) {
                self.count_hit();
                return Ok(read(directory)?);
            }
        }
        // Loaded under the gate, which an eviction needs too: the copy stays until read.
        let _gate = slot.gate.lock().await;
        if slot.is_fresh(team.version) {
            // Loaded by another caller while this one waited for the gate.
            self.count_hit();
        } else {
            self.reload(store, &slot, team_id).await?;
        }
        let guard = slot.read();
        let directory = guard.as_ref().ok_or(ServiceError::Busy)?;
        Ok(read(directory)?)
    }

    /// [`Directories::read`] for a read whose cost `work` tells (the groups it examines).
    /// Past [`HEAVY_READ`] it waits for the team's turn, one such read per team at a time,
    /// and runs off the request workers (`block_in_place`: the worker hands its other tasks
    /// to a new one), so that a team scanning its large directory in a loop holds one thread
    /// and never the workers that serve the other teams (docs/DESIGN.md, "Costs").
    pub(super) async fn read_weighed<R>(
        &self,
        store: &dyn Store,
        team: &TeamRecord,
        work: impl FnOnce(&Directory) -> usize,
        read: impl FnOnce(&Directory) -> Result<R, RuleError>,
    ) -> ServiceResult<R> {
        let light = self.read(store, team, |d| {
            if work(d) > HEAVY_READ {
                // Handed back, to be read in the team's turn.
                Ok(Err(read))
            } else {
                read(d).map(Ok)
            }
        });
        let read = match light.await? {
            Ok(answer) => return Ok(answer),
            Err(read) => read,
        };
        let slot = self.slot(team.access.team_id);
        let _turn = slot.heavy_reads.lock().await;
        self.read(store, team, |d| off_the_workers(|| read(d)))
            .await
    }

    /// Decide a change with `decide` on a current copy and commit it with its events, made by
    /// `origin`. `decide` may run more than once (after a lost race) and returns the changes
    /// plus a value for the caller; the caller also gets the ids of created groups.
    pub(super) async fn write<R>(
        &self,
        store: &dyn Store,
        team: &TeamRecord,
        origin: Origin<'_>,
        decide: impl Fn(&Directory) -> ServiceResult<(Vec<Change>, R)>,
    ) -> ServiceResult<(R, Vec<GroupId>)> {
        let (value, applied) = self.commit(store, team, origin, None, decide).await?;
        Ok((value, applied.created))
    }

    /// [`Directories::write`] that writes `scim` too, under the savepoint of the changes (or
    /// alone when there are none) and in the same commit; answers what was written.
    pub(super) async fn write_scim<R>(
        &self,
        store: &dyn Store,
        team: &TeamRecord,
        scim: ScimWrite,
        decide: impl Fn(&Directory) -> ServiceResult<(Vec<Change>, R)>,
    ) -> ServiceResult<(R, Applied)> {
        self.commit(store, team, Origin::scim(), Some(scim), decide)
            .await
    }

    async fn commit<R>(
        &self,
        store: &dyn Store,
        team: &TeamRecord,
        origin: Origin<'_>,
        scim: Option<ScimWrite>,
        decide: impl Fn(&Directory) -> ServiceResult<(Vec<Change>, R)>,
    ) -> ServiceResult<(R, Applied)> {
        let team_id = team.access.team_id;
        let slot = self.slot(team_id);
        let mut deciding = self.committer.deciding();
        let mut behind = false;
        // Whether the database's version was asked during this write.
        let mut asked = false;
        for attempt in 0..WRITE_ATTEMPTS {
            deciding.resume();
            let gate = slot.gate.clone().lock_owned().await;
            asked |= self.refresh(store, &slot, team, behind, attempt).await?;
            let (decided, expected) = {
                let guard = slot.read();
                let directory = guard.as_ref().ok_or(ServiceError::Busy)?;
                let decided = decide(directory).map(|(changes, value)| {
                    let drafts = events::derive(directory, &changes, origin.profiles);
                    (changes, drafts, value)
                });
                (decided, directory.version())
            };
            let (changes, drafts, value) = match decided {
                Ok(decided) => decided,
                Err(refusal) => {
                    self.confirm_refusal(store, team_id, expected, &mut asked, refusal)
                        .await?;
                    behind = true;
                    continue;
                }
            };
            if changes.is_empty() && scim.is_none() {
                let unchanged = Applied {
                    created: Vec::new(),
                    version: expected,
                    registered: None,
                };
                return Ok((value, unchanged));
            }
            let (reply, mut answer) = oneshot::channel();
            let ticket = Arc::new(Ticket::default());
            // Not counted as deciding once its job is queued (so the batch does not wait for it).
            deciding.hand_over();
            self.committer.submit(Job {
                team_id,
                expected,
                changes,
                drafts,
                scim: scim.clone(),
                actor: origin.actor.clone(),
                now: unix_now(),
                slot: slot.clone(),
                gate,
                reply,
                ticket: ticket.clone(),
            });
            let answer = match tokio::time::timeout(self.write_wait, &mut answer).await {
                Ok(answer) => answer,
                // Not yet taken: given up, never to be written.
                Err(_) if ticket.give_up() => return Err(StoreError::Unavailable.into()),
                // Taken meanwhile: its answer follows its commit.
                Err(_) => answer.await,
            };
            match answer {
                Ok(Ok(applied)) => {
                    self.evict_over_budget(team_id);
                    return Ok((value, applied));
                }
                Ok(Err(StoreError::Conflict)) => behind = true,
                Ok(Err(other)) => return Err(other.into()),
                // The committing task stopped (a panic): the outcome is unknown.
                Err(_) => {
                    slot.forget();
                    return Err(ServiceError::Busy);
                }
            }
        }
        Err(ServiceError::Busy)
    }

    /// `refusal` of a write decided on a copy at version `expected` as the write's answer, or
    /// `Ok` when the write is to be decided again on a reloaded copy. The team record may be up
    /// to the read-cache time old, so the copy may miss a change committed through another
    /// process (the parent a write names, say): a refusal is final only once the database
    /// confirms the copy is current (asked once per write, `asked`).
    async fn confirm_refusal(
        &self,
        store: &dyn Store,
        team_id: TeamId,
        expected: i64,
        asked: &mut bool,
        refusal: ServiceError,
    ) -> ServiceResult<()> {
        let behind = !std::mem::replace(asked, true)
            && store
                .team(team_id)
                .await?
                .is_some_and(|current| current.version > expected);
        if behind {
            Ok(())
        } else {
            Err(self.refused(refusal))
        }
    }

    /// A place among the callers waiting for the team's next commit in this process, unless
    /// the team already has `per_team` of them or the process `most`.
    pub(super) fn park(&self, team_id: TeamId, per_team: usize, most: usize) -> Option<Parked> {
        let slot = self.slot(team_id);
        let total = self.waiting.fetch_add(1, Ordering::AcqRel);
        let team = slot.waiting.fetch_add(1, Ordering::AcqRel);
        let parked = Parked {
            slot,
            waiting: self.waiting.clone(),
        };
        (total < most && team < per_team).then_some(parked)
    }
}

/// Who makes a write, and what the members' names were before it (the copy holds none).
pub(super) struct Origin<'a> {
    pub actor: Actor,
    pub profiles: &'a dyn PriorProfiles,
}

impl Origin<'static> {
    /// An app's change through the API, with no names known before it.
    pub(super) fn app(caller: &Caller) -> Origin<'static> {
        Origin {
            actor: caller.actor(ActorKind::App),
            profiles: &(),
        }
    }

    /// A SCIM client's change.
    pub(super) fn scim() -> Origin<'static> {
        Origin {
            actor: Actor {
                kind: ActorKind::Scim,
                appid: None,
                request_id: None,
            },
            profiles: &(),
        }
    }
}

/// A caller waiting for a team's next commit; leaves its place when dropped.
pub(super) struct Parked {
    slot: Arc<Slot>,
    waiting: Arc<AtomicUsize>,
}

impl Parked {
    /// Resolves at the team's next commit in this process (registered at once, so a commit
    /// between this call and the await is not missed).
    pub(super) fn committed(&self) -> std::pin::Pin<Box<tokio::sync::futures::Notified<'_>>> {
        let mut notified = Box::pin(self.slot.committed.notified());
        notified.as_mut().enable();
        notified
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.slot.waiting.fetch_sub(1, Ordering::AcqRel);
        self.waiting.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Run `work` on this thread, handing the runtime's other tasks to another worker first when
/// the runtime has several (the server's); inline on a single-threaded one.
fn off_the_workers<R>(work: impl FnOnce() -> R) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}
