//! The process-local cache of directories, kept equal to the database by version.
//!
//! Every contacts call already reads the team's row (for the tenant check), which carries the
//! team's version. A cached [`Directory`] at that version or newer answers at once; an older one
//! is reloaded. Writes are decided on the cached copy under a per-team gate and committed with
//! optimistic concurrency, so several processes on one database stay correct: a process that
//! lost a race reloads and decides again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};

use tokio::sync::Mutex as AsyncMutex;

use super::{ServiceError, ServiceResult, unix_now};
use crate::domain::RuleError;
use crate::domain::directory::{Change, Directory};
use crate::domain::values::{GroupId, TeamId};
use crate::store::{Store, StoreError, TeamRecord};

/// How often a write is decided again after losing a race with another process.
const WRITE_ATTEMPTS: u32 = 24;

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

#[derive(Default)]
struct Slot {
    /// Serializes loads and writes of this team within the process.
    gate: AsyncMutex<()>,
    directory: RwLock<Option<Directory>>,
}

impl Slot {
    fn read(&self) -> RwLockReadGuard<'_, Option<Directory>> {
        // A panic while applying a change would leave a half-applied copy: drop it and reload.
        match self.directory.read() {
            Ok(guard) => guard,
            Err(_) => {
                self.replace(None);
                self.directory.clear_poison();
                self.directory.read().unwrap_or_else(|p| p.into_inner())
            }
        }
    }

    fn replace(&self, directory: Option<Directory>) {
        let mut guard = self.directory.write().unwrap_or_else(|p| p.into_inner());
        *guard = directory;
    }

    fn is_fresh(&self, version: i64) -> bool {
        self.read().as_ref().is_some_and(|d| d.version() >= version)
    }
}

/// The cache of every directory this process has served.
#[derive(Default)]
pub(super) struct Directories {
    slots: Mutex<HashMap<TeamId, Arc<Slot>>>,
}

impl Directories {
    fn slot(&self, team_id: TeamId) -> Arc<Slot> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(team_id).or_default().clone()
    }

    async fn reload(&self, store: &dyn Store, slot: &Slot, team_id: TeamId) -> ServiceResult<()> {
        let directory = store
            .load_directory(team_id)
            .await?
            .ok_or(ServiceError::TeamNotFound)?;
        slot.replace(Some(directory));
        Ok(())
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
        if !slot.is_fresh(team.version) {
            let _gate = slot.gate.lock().await;
            if !slot.is_fresh(team.version) {
                self.reload(store, &slot, team_id).await?;
            }
        }
        let guard = slot.read();
        let directory = guard.as_ref().ok_or(ServiceError::Busy)?;
        Ok(read(directory)?)
    }

    /// Decide a change with `decide` on a current copy and commit it. `decide` may run more than
    /// once (after a lost race) and returns the changes plus a value for the caller; the caller
    /// also gets the ids of created groups.
    pub(super) async fn write<R>(
        &self,
        store: &dyn Store,
        team: &TeamRecord,
        decide: impl Fn(&Directory) -> Result<(Vec<Change>, R), RuleError>,
    ) -> ServiceResult<(R, Vec<GroupId>)> {
        let team_id = team.access.team_id;
        let slot = self.slot(team_id);
        let _gate = slot.gate.lock().await;
        let mut stale = !slot.is_fresh(team.version);
        for attempt in 0..WRITE_ATTEMPTS {
            if stale {
                if attempt > 0 {
                    back_off(attempt).await;
                }
                self.reload(store, &slot, team_id).await?;
            }
            let (changes, value, expected) = {
                let guard = slot.read();
                let directory = guard.as_ref().ok_or(ServiceError::Busy)?;
                let (changes, value) = decide(directory)?;
                (changes, value, directory.version())
            };
            if changes.is_empty() {
                return Ok((value, Vec::new()));
            }
            match store.apply(team_id, expected, &changes, unix_now()).await {
                Ok(applied) => {
                    let mut guard = slot.directory.write().unwrap_or_else(|p| p.into_inner());
                    match guard.as_mut() {
                        Some(directory) => {
                            directory.apply(&changes, &applied.created, applied.version)
                        }
                        None => *guard = None,
                    }
                    return Ok((value, applied.created));
                }
                Err(StoreError::Conflict) => stale = true,
                Err(other) => {
                    // The outcome is unknown (the commit may or may not have happened).
                    slot.replace(None);
                    return Err(other.into());
                }
            }
        }
        Err(ServiceError::Busy)
    }
}
