//! The skeleton of [`ApplyBatch::apply`](super::ApplyBatch::apply), the same on both
//! backends: cut the changes into runs that can be written together, give created groups their
//! ids, resolve the groups each change names, and hand each run to the backend's
//! [`ChangeWriter`], then number the batch's events and write them ([`write_events`]) in the same
//! transaction. What differs (how the version is checked and the team locked, how ids are
//! drawn, how a run becomes statements) is the backend's, behind that trait.

use std::collections::HashSet;

use async_trait::async_trait;

use super::{ChangeChunks, StoreResult};
use crate::domain::directory::{Change, Group, GroupRef, GroupStep, Kept, MemberRow};
use crate::domain::events::{Actor, Draft, NewEvent};
use crate::domain::values::{GroupId, UserId};

/// A group to insert, with its id and its parent's id resolved.
pub(crate) struct NewGroup<'a> {
    pub id: GroupId,
    pub parent_id: GroupId,
    pub group: &'a Group,
}

/// A member to insert or overwrite, with the ids of every group it is to be in, or `None` when
/// its memberships stay as they are.
pub(crate) struct PlacedMember<'a> {
    pub member: &'a MemberRow,
    pub groups: Option<Vec<GroupId>>,
}

/// A member to insert or overwrite that joins or leaves one group, keeping its others.
pub(crate) struct SteppedMember<'a> {
    pub member: &'a MemberRow,
    pub group: GroupId,
    pub step: GroupStep,
}

/// The writes of one directory change, inside the transaction that checked the team's version.
#[async_trait]
pub(crate) trait ChangeWriter: Send {
    /// The most changes written by one multi-row statement.
    const BATCH_ROWS: usize;
    /// Ids for `n` new groups, ascending: a group created later in a run may name an earlier
    /// one as its parent, so ids are known before the run is written.
    async fn group_ids(&mut self, n: usize) -> StoreResult<Vec<GroupId>>;
    async fn insert_groups(&mut self, groups: &[NewGroup<'_>]) -> StoreResult<()>;
    async fn update_group(&mut self, group: &Group, parent_id: GroupId) -> StoreResult<()>;
    /// Insert or overwrite members (no user twice) and replace their memberships; a stored
    /// member's name or avatar that `kept` names stays.
    async fn put_members(&mut self, members: &[PlacedMember<'_>], kept: Kept) -> StoreResult<()>;
    /// Insert or overwrite members (no user twice) and write the one membership each gains
    /// or loses; their other memberships are not touched.
    async fn step_members(&mut self, members: &[SteppedMember<'_>]) -> StoreResult<()>;
    /// Remove members (no user twice) and their memberships.
    async fn remove_members(&mut self, users: &[UserId]) -> StoreResult<()>;
    /// The last of the event numbers taken for this write's events, in the statement that
    /// checked the team's version
    /// ([`BackendDirectory::start_apply`](super::backend::BackendDirectory::start_apply)).
    fn last_seq(&self) -> i64;
    /// Insert events numbered from `first_seq` on, at most [`ChangeWriter::BATCH_EVENTS`], and
    /// the `event_writes` row at `first_seq` that gives them their time and `actor`
    /// (PostgreSQL holds a small write's events for the batch's commit,
    /// [`BackendDirectory::before_commit`](super::backend::BackendDirectory::before_commit)).
    async fn insert_events(
        &mut self,
        first_seq: i64,
        actor: &Actor,
        events: &[NewEvent],
    ) -> StoreResult<()>;
    /// The most events written by one statement.
    const BATCH_EVENTS: usize;
    /// Run what the writer has held back and wait until everything sent is written (a backend
    /// may gather the statements of a write and send them together); called once the write's
    /// changes and events are given.
    async fn flush(&mut self) -> StoreResult<()>;
    /// The write is large: its chunks follow ([`write_chunks`]). Each backend then sends a
    /// statement whose answer it does not need without waiting for it to be written, so that
    /// the next is made meanwhile ([`ChangeWriter::flush`] waits for all of them). PostgreSQL
    /// also asks whether the team has members at all, and inserts new ones without
    /// `ON CONFLICT` where it has none.
    fn large_write(&mut self);
}

/// Number the events of a batch of `changes` whose created groups got the ids `created`, and
/// write them.
pub(crate) async fn write_events<W: ChangeWriter>(
    writer: &mut W,
    actor: &Actor,
    drafts: &[Draft],
    changes: &[Change],
    created: &[GroupId],
) -> StoreResult<()> {
    let first_seq = writer.last_seq() - drafts.len() as i64 + 1;
    write_events_from(writer, first_seq, actor, drafts, changes, created).await
}

/// [`write_events`] numbered from `first_seq` on (a write in chunks numbers its events as they
/// come).
pub(crate) async fn write_events_from<W: ChangeWriter>(
    writer: &mut W,
    first_seq: i64,
    actor: &Actor,
    drafts: &[Draft],
    changes: &[Change],
    created: &[GroupId],
) -> StoreResult<()> {
    let mut next = first_seq;
    for chunk in drafts.chunks(W::BATCH_EVENTS) {
        let events: Vec<NewEvent> = chunk
            .iter()
            .map(|draft| draft.resolve(changes, created))
            .collect();
        writer.insert_events(next, actor, &events).await?;
        next += chunk.len() as i64;
    }
    Ok(())
}

/// Write every chunk of `chunks` in order through `writer`, their events numbered from
/// `first_seq` on, each chunk given back to `chunks` once handed to the database (the next one
/// is made while the database writes it); answers the ids of the created groups, in order, and
/// how many events were written.
pub(crate) async fn write_chunks<W: ChangeWriter>(
    writer: &mut W,
    first_seq: i64,
    chunks: &mut dyn ChangeChunks,
    actor: &Actor,
) -> StoreResult<(Vec<GroupId>, i64)> {
    let mut created = Vec::new();
    let mut next_seq = first_seq;
    writer.large_write();
    while let Some((changes, drafts)) = chunks.next_chunk() {
        write_more_changes(writer, &changes, &mut created).await?;
        write_events_from(writer, next_seq, actor, &drafts, &changes, &created).await?;
        next_seq += drafts.len() as i64;
        chunks.written(changes, &created);
    }
    writer.flush().await?;
    Ok((created, next_seq - first_seq))
}

/// Write `changes` in order through `writer`; answers the ids of the created groups, in order.
pub(crate) async fn write_changes<W: ChangeWriter>(
    writer: &mut W,
    changes: &[Change],
) -> StoreResult<Vec<GroupId>> {
    let mut created: Vec<GroupId> = Vec::new();
    write_more_changes(writer, changes, &mut created).await?;
    Ok(created)
}

/// [`write_changes`] after the changes that created the groups `created` (a write in chunks);
/// the ids of the groups these changes create are added to it.
pub(crate) async fn write_more_changes<W: ChangeWriter>(
    writer: &mut W,
    changes: &[Change],
    created: &mut Vec<GroupId>,
) -> StoreResult<()> {
    let mut rest = changes;
    while !rest.is_empty() {
        let (run, tail) = rest.split_at(run_length(rest, W::BATCH_ROWS));
        rest = tail;
        match &run[0] {
            Change::CreateGroup { .. } => {
                let ids = writer.group_ids(run.len()).await?;
                let mut groups = Vec::with_capacity(run.len());
                for (change, id) in run.iter().zip(ids) {
                    if let Change::CreateGroup { parent, group } = change {
                        let parent_id = resolve(created, parent);
                        created.push(id);
                        groups.push(NewGroup {
                            id,
                            parent_id,
                            group,
                        });
                    }
                }
                writer.insert_groups(&groups).await?;
            }
            Change::UpdateGroup { .. } => {
                // One statement each, in order: a later update may reuse a remote id an earlier
                // one freed, and the unique index is checked row by row.
                for change in run {
                    if let Change::UpdateGroup { group, parent } = change {
                        writer.update_group(group, resolve(created, parent)).await?;
                    }
                }
            }
            Change::PutMember { kept, .. } => {
                let members: Vec<PlacedMember> = run
                    .iter()
                    .filter_map(|change| match change {
                        Change::PutMember { member, groups, .. } => Some(PlacedMember {
                            member,
                            groups: groups
                                .as_ref()
                                .map(|groups| groups.iter().map(|g| resolve(created, g)).collect()),
                        }),
                        _ => None,
                    })
                    .collect();
                writer.put_members(&members, *kept).await?;
            }
            Change::StepMember { .. } => {
                let members: Vec<SteppedMember> = run
                    .iter()
                    .filter_map(|change| match change {
                        Change::StepMember {
                            member,
                            group,
                            step,
                        } => Some(SteppedMember {
                            member,
                            group: *group,
                            step: *step,
                        }),
                        _ => None,
                    })
                    .collect();
                writer.step_members(&members).await?;
            }
            Change::RemoveMember(_) => {
                let users: Vec<UserId> = run
                    .iter()
                    .filter_map(|change| match change {
                        Change::RemoveMember(user_id) => Some(*user_id),
                        _ => None,
                    })
                    .collect();
                writer.remove_members(&users).await?;
            }
        }
    }
    Ok(())
}

fn resolve(created: &[GroupId], group: &GroupRef) -> GroupId {
    match group {
        GroupRef::Existing(id) => *id,
        GroupRef::New(index) => created[*index],
    }
}

/// How many changes from the start of `changes` are written together: a run of one kind (for
/// members put, keeping the same fields), at most `most`, and for members cut before a user
/// comes again (a multi-row upsert may not touch a row twice, and a later change must replace
/// an earlier one's groups, as it would one statement at a time), so that writing a run at
/// once equals writing its changes in order.
fn run_length(changes: &[Change], most: usize) -> usize {
    let kind = |change: &Change| {
        let kept = match change {
            Change::PutMember { kept, .. } => *kept,
            _ => Kept::NONE,
        };
        (std::mem::discriminant(change), kept)
    };
    let first = kind(&changes[0]);
    let mut users = HashSet::new();
    changes
        .iter()
        .take(most)
        .take_while(|change| kind(change) == first)
        .take_while(|change| match change {
            Change::PutMember { member, .. } | Change::StepMember { member, .. } => {
                users.insert(member.user_id)
            }
            Change::RemoveMember(user_id) => users.insert(*user_id),
            _ => true,
        })
        .count()
}
