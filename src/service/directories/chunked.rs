//! Writes too large to hold as one list of changes (a sync): decided on the team's copy under
//! its gate like any write, then written a chunk at a time in a transaction of their own, past
//! the committing task, or staged first where the store can ([`ChunkedWrite`]; "Write path of a
//! sync" in docs/DESIGN.md).

use std::time::Instant;

use super::{Directories, WRITE_ATTEMPTS};
use crate::domain::directory::{Directory, Staging};
use crate::domain::events::Actor;
use crate::service::{ServiceError, ServiceResult, unix_now};
use crate::store::{ChangeChunks, LargeWrite, Store, StoreError, StoreResult, TeamRecord};

impl Directories {
    /// Decide a write too large to hold as one list of changes ([`ChunkedWrite`]: a sync) on a
    /// current copy under the team's gate, and write it in a transaction of its own, a chunk at
    /// a time, past the committing task (which it would hold as long anyway). The copy is taken
    /// out of the cache while it is written (a small one is cloned instead, and stays readable),
    /// so that the chunks are applied to it as they are written without a second copy of a large
    /// directory: that team's readers wait for the write as they would for a load. Once committed
    /// it is put back; a failed write drops it (the next use reloads).
    pub(in crate::service) async fn write_chunked<W: ChunkedWrite>(
        &self,
        store: &dyn Store,
        team: &TeamRecord,
        actor: &Actor,
        write: &W,
    ) -> ServiceResult<W::Plan> {
        let team_id = team.access.team_id;
        let slot = self.slot(team_id);
        let mut behind = false;
        let mut asked = false;
        for attempt in 0..WRITE_ATTEMPTS {
            let _gate = slot.gate.lock().await;
            asked |= self.refresh(store, &slot, team, behind, attempt).await?;
            let version = slot.read().as_ref().ok_or(ServiceError::Busy)?.version();
            if !write.catch_up(store, version).await? {
                behind = true;
                continue;
            }
            let (decided, expected) = {
                let guard = slot.read();
                let directory = guard.as_ref().ok_or(ServiceError::Busy)?;
                (write.decide(directory), directory.version())
            };
            let plan = match decided {
                Ok(plan) => plan,
                Err(refusal) => {
                    self.confirm_refusal(store, team_id, expected, &mut asked, refusal)
                        .await?;
                    behind = true;
                    continue;
                }
            };
            let mut copy = slot.take_for_write().ok_or(ServiceError::Busy)?;
            let staging = write.staging(&plan);
            let written = match write.chunks(&plan, &mut copy) {
                None => None,
                Some(mut chunks) => {
                    let large = LargeWrite {
                        team_id,
                        expected_version: expected,
                        now: unix_now(),
                    };
                    Some(
                        self.write_chunks(store, large, staging, &mut *chunks, actor)
                            .await,
                    )
                }
            };
            match written {
                None => {
                    slot.replace(Some(copy));
                    return Ok(plan);
                }
                Some(Ok(version)) => {
                    copy.apply(&[], &[], version);
                    slot.replace(Some(copy));
                    slot.committed.notify_waiters();
                    self.committer.any_commit.notify_waiters();
                    self.evict_over_budget(team_id);
                    return Ok(plan);
                }
                Some(Err(StoreError::Conflict)) => behind = true,
                Some(Err(other)) => return Err(other.into()),
            }
        }
        Err(ServiceError::Busy)
    }

    /// Write `chunks` in a transaction of their own and commit; answers the team's version.
    /// A write that can be staged (`staging`: what it writes) is staged first where the store
    /// can, so that it holds the database's write lock only for its copy.
    async fn write_chunks(
        &self,
        store: &dyn Store,
        write: LargeWrite,
        staging: Option<Staging>,
        chunks: &mut dyn ChangeChunks,
        actor: &Actor,
    ) -> StoreResult<i64> {
        let staged = match staging {
            Some(staging) => store.stage(write, staging, chunks, actor).await?,
            None => None,
        };
        let committing;
        let applied = match staged {
            Some(staged) => {
                committing = Instant::now();
                let applied = staged.commit().await?;
                tracing::info!(
                    team_id = write.team_id.get(),
                    copy_ms = committing.elapsed().as_millis() as u64,
                    "a large write was staged and copied in"
                );
                applied
            }
            None => {
                let mut batch = store.begin_large_batch().await?;
                let applied = batch.apply_chunks(write, chunks, actor).await?;
                committing = Instant::now();
                batch.commit().await?;
                applied
            }
        };
        if let Some(metrics) = &self.metrics {
            metrics.commit(committing.elapsed(), 1);
        }
        Ok(applied.version)
    }
}

/// A write too large to hold as one list of changes (a sync), for
/// [`Directories::write_chunked`].
pub(in crate::service) trait ChunkedWrite: Sync {
    /// What the decision answers (a plan, or why nothing is written).
    type Plan: Send;
    /// Bring what the write read of the store before taking the gate up to `version`, the
    /// copy's it is about to be decided on; `false`: the store is past that version (another
    /// process wrote), so the copy is reloaded and this asked again.
    fn catch_up(
        &self,
        store: &dyn Store,
        version: i64,
    ) -> impl Future<Output = ServiceResult<bool>> + Send;
    /// Decide on the current copy, after [`catch_up`](Self::catch_up); may run more than once
    /// (after a lost race).
    fn decide(&self, directory: &Directory) -> ServiceResult<Self::Plan>;
    /// What `plan` writes, when its changes are of the kinds a store may stage before taking
    /// the database's write lock ([`DirectoryStore::stage`](crate::store::DirectoryStore::stage)).
    fn staging(&self, plan: &Self::Plan) -> Option<Staging>;
    /// The changes of `plan` in chunks, with their events, made from `copy` (the directory they
    /// were decided on) and applied to it as they are written; `None`: nothing to write.
    fn chunks<'a>(
        &'a self,
        plan: &'a Self::Plan,
        copy: &'a mut Directory,
    ) -> Option<Box<dyn ChangeChunks + 'a>>;
}
