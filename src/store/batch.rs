//! The group commit's transaction on both backends: [`ApplyBatch`] over a backend's
//! [`BackendDirectory`](super::backend::BackendDirectory), with the statements it runs around
//! each write (its savepoint, the undo of a write that did not stand, a large write's event
//! numbers). Like the stores of [`shared`](super::shared), it is a macro expanded for each
//! backend's store type ([`impl_batch!`]); a store opens a batch through [`Batches`]. How the
//! committing task uses a batch is in `service/committer.rs`; what a backend keeps from one
//! write to the next is its
//! [`BackendDirectory::Known`](super::backend::BackendDirectory::Known).

use super::backend::{Backend, Tx};
use super::{ApplyBatch, StoreError};

/// A backend's store opens an [`ApplyBatch`] on a transaction of its own.
pub(crate) trait Batches: Backend {
    /// A batch in `tx`, which holds nothing yet.
    fn batch(tx: Tx<Self>) -> Box<dyn ApplyBatch>;
}

/// Each change of an [`ApplyBatch`] runs under this savepoint, so that a refused or failed one
/// leaves the others standing. A change that stands is not released at
/// once: its savepoint ends with the next change's ([`NEXT_SAVEPOINT`]) or with the commit,
/// which saves a round trip per change.
pub(crate) const SAVEPOINT: &str = "SAVEPOINT apply";
/// The end of the last change, which stands, and the savepoint of the next, in one round trip.
pub(crate) const NEXT_SAVEPOINT: &str = "RELEASE SAVEPOINT apply; SAVEPOINT apply";
/// Undo the change begun at the savepoint and end the savepoint, in one round trip.
pub(crate) const UNDO: &str = "ROLLBACK TO SAVEPOINT apply; RELEASE SAVEPOINT apply";
/// Take `$2` more event numbers of team `$1`, inside a write that holds the team (a write in
/// chunks takes them once it knows how many it wrote).
pub(crate) const TAKE_EVENT_NUMBERS: &str =
    "UPDATE teams SET event_seq = event_seq + $2 WHERE id = $1";

/// The failure of a change set, with a unique index's refusal answered as
/// [`StoreError::Conflict`]: the copy the change set was decided on missed a row (one written
/// behind the service's back), so it is reloaded and the change set decided again, and the
/// rules then refuse it as they should (PostgreSQL's `apply_error` does so for its writes
/// already; this gives SQLite's the same answer).
pub(crate) fn behind_a_row(error: StoreError) -> StoreError {
    match &error {
        StoreError::Database(database)
            if matches!(&**database, sqlx::Error::Database(refusal)
                if refusal.kind() == sqlx::error::ErrorKind::UniqueViolation) =>
        {
            tracing::warn!(%error, "directory write refused by a unique index; reloading");
            StoreError::Conflict
        }
        _ => error,
    }
}

/// [`ApplyBatch`] for `$store`'s transactions, opened through [`Batches`].
macro_rules! impl_batch {
    ($store:ty) => {
        const _: () = {
            use async_trait::async_trait;
            use $crate::domain::directory::Change;
            use $crate::domain::events::{Actor, Draft};
            use $crate::domain::values::TeamId;
            use $crate::store::apply::{self, ChangeWriter};
            use $crate::store::backend::{BackendDirectory, Tx, WriteStart};
            use $crate::store::batch::{self, Batches};
            use $crate::store::scim::ScimWrite;
            use $crate::store::{
                Applied, ApplyBatch, ChangeChunks, LargeWrite, StoreError, StoreResult,
            };

            async fn undo(tx: &mut Tx<$store>) -> StoreResult<()> {
                sqlx::raw_sql(batch::UNDO).execute(&mut **tx).await?;
                Ok(())
            }

            /// [`ApplyBatch`] on this backend. `tx` is `None` once a failure left the
            /// transaction in an unknown state: every later call fails, and so does the commit.
            /// `open`: the last change stands and its savepoint is not yet released.
            struct Batch {
                tx: Option<Tx<$store>>,
                open: bool,
                known: <$store as BackendDirectory>::Known,
            }

            impl Batches for $store {
                fn batch(tx: Tx<$store>) -> Box<dyn ApplyBatch> {
                    Box::new(Batch {
                        tx: Some(tx),
                        open: false,
                        known: Default::default(),
                    })
                }
            }

            #[async_trait]
            impl ApplyBatch for Batch {
                async fn apply(
                    &mut self,
                    team_id: TeamId,
                    expected_version: i64,
                    changes: &[Change],
                    (actor, drafts): (&Actor, &[Draft]),
                    scim: Option<&ScimWrite>,
                    now: i64,
                ) -> StoreResult<Applied> {
                    if changes.is_empty() && scim.is_none() {
                        return Ok(Applied {
                            created: Vec::new(),
                            version: expected_version,
                            registered: None,
                        });
                    }
                    let mut tx = self.tx.take().ok_or(StoreError::BatchFailed)?;
                    let savepoint = if self.open {
                        batch::NEXT_SAVEPOINT
                    } else {
                        batch::SAVEPOINT
                    };
                    // From here on the last change's savepoint is released, or the batch failed.
                    self.open = false;
                    let start = WriteStart {
                        savepoint,
                        team_id,
                        expected: expected_version,
                        events: drafts.len(),
                        now,
                    };
                    let start = match scim {
                        // A SCIM write alone leaves the directory and its version as they are.
                        Some(write) if changes.is_empty() => {
                            // It may register a user the batch does not know of.
                            <$store>::forget(&mut tx, &mut self.known).await?;
                            sqlx::raw_sql(savepoint).execute(&mut *tx).await?;
                            let written = <$store>::write_scim(&mut tx, team_id, write, now).await;
                            match written {
                                Ok(_) => self.open = true,
                                Err(_) => undo(&mut tx).await?,
                            }
                            self.tx = Some(tx);
                            return written.map(|registered| Applied {
                                created: Vec::new(),
                                version: expected_version,
                                registered,
                            });
                        }
                        Some(write) => {
                            <$store>::start_scim_apply(tx, start, write, &mut self.known).await?
                        }
                        None => {
                            let start = <$store>::start_apply(tx, start, &mut self.known);
                            start
                                .await?
                                .map(|writer| (writer, None))
                                .map_err(|tx| (tx, StoreError::Conflict))
                        }
                    };
                    let (mut writer, registered) = match start {
                        Ok(started) => started,
                        Err((mut tx, refusal)) => {
                            undo(&mut tx).await?;
                            self.tx = Some(tx);
                            return Err(refusal);
                        }
                    };
                    // The changes name the user the SCIM write just registered as
                    // `REGISTERED_USER`.
                    let named;
                    let (changes, drafts) = match registered {
                        Some(user_id) => {
                            named = (
                                $crate::domain::directory::with_registered(changes, user_id),
                                $crate::domain::events::with_registered(drafts, user_id),
                            );
                            (named.0.as_slice(), named.1.as_slice())
                        }
                        None => (changes, drafts),
                    };
                    let written = async {
                        let created = apply::write_changes(&mut writer, changes).await?;
                        apply::write_events(&mut writer, actor, drafts, changes, &created).await?;
                        writer.flush().await?;
                        Ok(created)
                    }
                    .await;
                    let finished =
                        <$store>::finish_apply(writer, written.is_ok(), &mut self.known).await;
                    let (mut tx, version) = match finished {
                        Ok(finished) => finished,
                        // The batch is lost ([`ApplyBatch::lost`]); the write's own failure is
                        // its answer.
                        Err(error) => return Err(written.err().unwrap_or(error)),
                    };
                    match written {
                        Ok(_) => self.open = true,
                        Err(_) => undo(&mut tx).await?,
                    }
                    self.tx = Some(tx);
                    written
                        .map(|created| Applied {
                            created,
                            version,
                            registered,
                        })
                        .map_err(batch::behind_a_row)
                }

                async fn apply_chunks(
                    &mut self,
                    write: LargeWrite,
                    chunks: &mut dyn ChangeChunks,
                    actor: &Actor,
                ) -> StoreResult<Applied> {
                    let LargeWrite {
                        team_id,
                        expected_version,
                        now,
                    } = write;
                    let mut tx = self.tx.take().ok_or(StoreError::BatchFailed)?;
                    let savepoint = if self.open {
                        batch::NEXT_SAVEPOINT
                    } else {
                        batch::SAVEPOINT
                    };
                    // No event number is taken yet: how many events there are is known at the end.
                    // The check is asked (a sync may have no chunk to send it with), and what the
                    // batch knew is forgotten: the sync creates groups and numbers events after.
                    <$store>::forget(&mut tx, &mut self.known).await?;
                    self.open = false;
                    let start = WriteStart {
                        savepoint,
                        team_id,
                        expected: expected_version,
                        events: 0,
                        now,
                    };
                    let start = <$store>::start_apply(tx, start, &mut self.known);
                    let mut writer = match start.await? {
                        Ok(writer) => writer,
                        Err(mut tx) => {
                            undo(&mut tx).await?;
                            self.tx = Some(tx);
                            return Err(StoreError::Conflict);
                        }
                    };
                    let first_seq = apply::ChangeWriter::last_seq(&writer) + 1;
                    let written = apply::write_chunks(&mut writer, first_seq, chunks, actor).await;
                    let (mut tx, version) =
                        <$store>::finish_apply(writer, false, &mut self.known).await?;
                    let written = match written {
                        Ok((created, events)) => sqlx::query(batch::TAKE_EVENT_NUMBERS)
                            .bind(team_id)
                            .bind(events)
                            .execute(&mut *tx)
                            .await
                            .map(|_| created)
                            .map_err(StoreError::from),
                        Err(error) => Err(error),
                    };
                    match written {
                        Ok(_) => self.open = true,
                        Err(_) => undo(&mut tx).await?,
                    }
                    self.tx = Some(tx);
                    written.map(|created| Applied {
                        created,
                        version,
                        registered: None,
                    })
                }

                fn lost(&self) -> bool {
                    self.tx.is_none()
                }

                async fn commit(self: Box<Self>) -> StoreResult<()> {
                    let Batch { tx, mut known, .. } = *self;
                    let mut tx = tx.ok_or(StoreError::BatchFailed)?;
                    <$store>::before_commit(&mut tx, &mut known).await?;
                    tx.commit().await?;
                    Ok(())
                }
            }
        };
    };
}

pub(crate) use impl_batch;
