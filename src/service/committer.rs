//! Group commit of directory writes: one task per process takes the changes decided on the
//! cached copies, of any team, writes them one after the other into one transaction
//! ([`ApplyBatch`](crate::store::ApplyBatch)) and commits them together, so that one durable
//! commit (one fsync) serves many writes. A write may carry a SCIM row ([`ScimWrite`]), written
//! under the same savepoint as its changes (or alone). See "Write path" in docs/DESIGN.md.
//!
//! A [`Job`] arrives holding its team's gate. Once its changes are written (each under its own
//! savepoint, with its own version check) they are applied to the team's copy and the gate is
//! released, so the team's next write is decided on a copy that includes them while they are
//! not yet committed; the writer is answered only once the commit is durable. A write the
//! database refuses is answered at once and leaves nothing behind. When the commit fails, every
//! write of the batch fails (its outcome is unknown, as for any failed commit) and the copies of
//! its teams are dropped: the next write reloads, and a write decided on the dropped copy fails
//! its version check and is decided again.
//!
//! A batch whose transaction is lost before its commit (on PostgreSQL, a team's later write
//! that the database refuses after its check in memory passed; see
//! [`ApplyBatch::lost`](crate::store::ApplyBatch::lost)) takes no further job, and its writes
//! are answered [`StoreError::Conflict`]: nothing of them was committed, so each is decided
//! again on a reloaded copy, as a write refused by its version check is.
//!
//! The batch is committed when no further job is on its way: none is queued and no writer is
//! deciding (or one has not handed its job over within [`WAIT`]), or it has reached
//! [`MOST_JOBS`] or [`MOST_TIME`], which bound how long the transaction holds the database's
//! write lock.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, OwnedMutexGuard, mpsc, oneshot};

use super::directories::Slot;
use crate::domain::directory::Change;
use crate::domain::events::{Actor, Draft};
use crate::domain::values::TeamId;
use crate::metrics::Metrics;
use crate::store::scim::ScimWrite;
use crate::store::{Applied, Store, StoreError, StoreResult};

/// The most writes committed together.
const MOST_JOBS: usize = 1024;
/// How long a batch gathers writes at most.
const MOST_TIME: Duration = Duration::from_millis(20);
/// How long a batch waits for a writer that is deciding to hand its write over.
const WAIT: Duration = Duration::from_millis(1);

/// A decided write of one team, on its way to the database.
pub(super) struct Job {
    pub team_id: TeamId,
    /// The version of the copy it was decided on.
    pub expected: i64,
    pub changes: Vec<Change>,
    pub drafts: Vec<Draft>,
    /// A SCIM row written with the changes.
    pub scim: Option<ScimWrite>,
    pub actor: Actor,
    pub now: i64,
    pub slot: Arc<Slot>,
    /// The team's gate, held until the changes are on the copy (or refused).
    pub gate: OwnedMutexGuard<()>,
    /// What was written (the ids of the created groups, the user registered) once committed,
    /// or why not.
    pub reply: oneshot::Sender<StoreResult<Applied>>,
    /// Whether the job is still wanted when the committing task comes to it.
    pub ticket: Arc<Ticket>,
}

/// The state of a queued [`Job`]: its writer waits for it a limited time
/// ([`Directories`](super::directories::Directories)' write wait, as long as another team's
/// large write may hold the committing task) and may give it up, but only while the committing
/// task has not taken it, so a job given up is never written and a job taken is always answered.
#[derive(Debug, Default)]
pub(super) struct Ticket(AtomicU8);

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const GIVEN_UP: u8 = 2;

impl Ticket {
    /// The committing task takes the job: `false` if its writer gave it up.
    fn take(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The writer gives the job up: `false` if the committing task already took it (its answer
    /// follows).
    pub(super) fn give_up(&self) -> bool {
        self.0
            .compare_exchange(QUEUED, GIVEN_UP, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// The writers' side of the committing task.
pub(super) struct Committer {
    store: Arc<dyn Store>,
    /// Woken at every commit of any team in this process (the webhook worker waits on it).
    pub(super) any_commit: Arc<Notify>,
    /// Commit latency, batch sizes and conflicts, when metrics are on.
    metrics: Option<Arc<Metrics>>,
    jobs: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    /// Writers between their start and the hand-over of their job.
    deciding: Arc<AtomicUsize>,
}

impl Committer {
    pub(super) fn new(store: Arc<dyn Store>) -> Committer {
        Committer {
            store,
            any_commit: Arc::new(Notify::new()),
            metrics: None,
            jobs: Mutex::new(None),
            deciding: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(super) fn set_metrics(&mut self, metrics: Arc<Metrics>) {
        self.metrics = Some(metrics);
    }

    /// Count a writer as deciding until the guard is dropped or [`Deciding::hand_over`].
    pub(super) fn deciding(&self) -> Deciding {
        self.deciding.fetch_add(1, Ordering::AcqRel);
        Deciding {
            count: self.deciding.clone(),
            active: true,
        }
    }

    /// Queue `job`; the task is started on first use (and again should it have stopped).
    pub(super) fn submit(&self, job: Job) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let sender = match jobs.as_ref().filter(|sender| !sender.is_closed()) {
            Some(sender) => sender.clone(),
            None => {
                let (sender, receiver) = mpsc::unbounded_channel();
                tokio::spawn(run(
                    self.store.clone(),
                    receiver,
                    self.deciding.clone(),
                    Signals {
                        any_commit: self.any_commit.clone(),
                        metrics: self.metrics.clone(),
                    },
                ));
                *jobs = Some(sender.clone());
                sender
            }
        };
        drop(jobs);
        // A send fails only if the task stopped since the check; the job is then dropped, its
        // gate released and its writer told (its reply is closed).
        let _ = sender.send(job);
    }
}

/// A writer counted as deciding (see [`Committer::deciding`]).
pub(super) struct Deciding {
    count: Arc<AtomicUsize>,
    active: bool,
}

impl Deciding {
    /// The writer's job is handed over (or it is not deciding for now).
    pub(super) fn hand_over(&mut self) {
        if std::mem::replace(&mut self.active, false) {
            self.count.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// The writer decides again.
    pub(super) fn resume(&mut self) {
        if !std::mem::replace(&mut self.active, true) {
            self.count.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl Drop for Deciding {
    fn drop(&mut self) {
        self.hand_over();
    }
}

/// A write in the open batch, waiting for the commit.
struct Written {
    slot: Arc<Slot>,
    applied: Applied,
    reply: oneshot::Sender<StoreResult<Applied>>,
}

/// What the committing task tells the rest of the process about its commits.
struct Signals {
    any_commit: Arc<Notify>,
    metrics: Option<Arc<Metrics>>,
}

async fn run(
    store: Arc<dyn Store>,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    deciding: Arc<AtomicUsize>,
    signals: Signals,
) {
    while let Some(first) = jobs.recv().await {
        if !first.ticket.take() {
            // Given up by its writer: dropped unwritten (its gate is released with it).
            continue;
        }
        let mut batch = match store.begin_batch().await {
            Ok(batch) => batch,
            Err(error) => {
                let _ = first.reply.send(Err(error));
                continue;
            }
        };
        let started = Instant::now();
        let mut written: Vec<Written> = Vec::new();
        let mut next = Some(first);
        while let Some(job) = next.take() {
            let outcome = batch
                .apply(
                    job.team_id,
                    job.expected,
                    &job.changes,
                    (&job.actor, &job.drafts),
                    job.scim.as_ref(),
                    job.now,
                )
                .await;
            match outcome {
                Ok(applied) => {
                    if !job.changes.is_empty() {
                        job.slot.speculate(job.expected, &job.changes, &applied);
                    }
                    drop(job.gate);
                    written.push(Written {
                        slot: job.slot,
                        applied,
                        reply: job.reply,
                    });
                }
                Err(error) => {
                    if matches!(error, StoreError::Conflict) {
                        // The copy is behind the database: the next write reloads it.
                        job.slot.forget();
                        if let Some(metrics) = &signals.metrics {
                            metrics.commit_conflict();
                        }
                    }
                    drop(job.gate);
                    let _ = job.reply.send(Err(error));
                }
            }
            if batch.lost() {
                break;
            }
            if written.len() < MOST_JOBS && started.elapsed() < MOST_TIME {
                next = next_job(&mut jobs, &deciding).await;
            }
        }
        if batch.lost() {
            give_back(written, &signals);
            continue;
        }
        if written.is_empty() {
            // Nothing stands: the transaction is rolled back as the batch is dropped.
            continue;
        }
        let committing = Instant::now();
        let committed = batch.commit().await;
        match &committed {
            Ok(()) => {
                signals.any_commit.notify_waiters();
                if let Some(metrics) = &signals.metrics {
                    metrics.commit(committing.elapsed(), written.len());
                }
            }
            Err(error) => {
                tracing::error!(%error, writes = written.len(), "commit of directory writes failed")
            }
        }
        for Written {
            slot,
            applied,
            reply,
        } in written
        {
            let answer = match &committed {
                Ok(()) => {
                    slot.committed.notify_waiters();
                    Ok(applied)
                }
                Err(_) => {
                    slot.forget();
                    Err(StoreError::BatchFailed)
                }
            };
            let _ = reply.send(answer);
        }
    }
}

/// The writes of a batch that was lost before its commit: nothing of them was committed, so
/// each is decided again, on its team's copy reloaded (their changes are on the copies).
fn give_back(written: Vec<Written>, signals: &Signals) {
    if !written.is_empty() {
        tracing::warn!(
            writes = written.len(),
            "a batch of directory writes was lost before its commit; deciding them again"
        );
    }
    for Written { slot, reply, .. } in written {
        slot.forget();
        if let Some(metrics) = &signals.metrics {
            metrics.commit_conflict();
        }
        let _ = reply.send(Err(StoreError::Conflict));
    }
}

/// The next job for the open batch, if one is on its way; jobs given up are dropped unwritten.
async fn next_job(jobs: &mut mpsc::UnboundedReceiver<Job>, deciding: &AtomicUsize) -> Option<Job> {
    loop {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(_) if deciding.load(Ordering::Acquire) == 0 => return None,
            Err(_) => tokio::time::timeout(WAIT, jobs.recv())
                .await
                .ok()
                .flatten()?,
        };
        if job.ticket.take() {
            return Some(job);
        }
    }
}
