//! Directory sync (§8): make a directory equal to a snapshot in one transaction.
//!
//! The snapshot is planned twice at most: once to validate it and answer a dry run (users not
//! registered yet get stand-in ids), and once, after the missing users are registered, under the
//! team's write gate to produce the batch that is committed. Registering users is idempotent and
//! touches no directory, so a refused or failed sync leaves no trace in any directory.

use std::collections::HashMap;
use std::time::Instant;

use super::quotas::Growth;
use super::{Service, ServiceError, ServiceResult, unix_now};
use crate::domain::access::Caller;
use crate::domain::sync::{self, MemberState, Snapshot, SyncOptions, SyncRefusal, SyncReport};
use crate::domain::values::{TeamId, UserId};
use crate::store::{NewUser, TeamRecord};

/// The report of a sync, with the time it took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOutcome {
    pub report: SyncReport,
    pub dry_run: bool,
    pub elapsed_ms: u64,
}

impl Service {
    pub async fn sync_directory(
        &self,
        caller: &Caller,
        team_id: TeamId,
        snapshot: &Snapshot,
        options: SyncOptions,
        dry_run: bool,
    ) -> ServiceResult<SyncOutcome> {
        let started = Instant::now();
        let team = self.team_for(caller, team_id).await?;
        let max_depth = self.settings.max_group_depth;
        // Three independent reads of millions of rows each: run them side by side (the
        // directory read is a no-op when this process has the current copy already).
        let (users, members, ()) = tokio::try_join!(
            async { Ok(self.store.app_user_ids(&caller.appid).await?) },
            async { Ok(self.store.member_states(team_id).await?) },
            self.directories.read(&*self.store, &team, |_| Ok(())),
        )?;
        let mut users: HashMap<String, UserId> = users.into_iter().collect();
        let members: HashMap<_, _> = members.into_iter().collect();
        tracing::info!(
            team_id,
            users = users.len(),
            members = members.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "sync: read the stored users, members and directory"
        );

        // Stand-in ids (negative, never stored) for openids without a user yet; they are
        // replaced by the real ids once the users are registered.
        let mut missing = Vec::new();
        for (n, member) in snapshot.members.iter().enumerate() {
            if !users.contains_key(&member.openid) {
                missing.push(NewUser {
                    openid: &member.openid,
                    nickname: &member.nickname,
                    avatar: &member.avatar,
                });
                users.insert(member.openid.clone(), -(n as UserId) - 1);
            }
        }
        let now = unix_now();
        if !dry_run && missing.is_empty() {
            // Every user exists: decide once, under the write gate.
            return self
                .commit_sync(&team, snapshot, options, &users, &members, started)
                .await;
        }
        let quota = self.team_quota(&team).await?;
        let checked = self
            .directories
            .read(&*self.store, &team, |d| {
                Ok(
                    sync::plan(d, snapshot, options, &users, &members, max_depth, now).map(
                        |(_, report)| {
                            let within_quota = quota.check(d, Growth::from(&report));
                            (report, within_quota)
                        },
                    ),
                )
            })
            .await?;
        let (report, within_quota) = checked.map_err(ServiceError::SyncRefused)?;
        within_quota?;
        tracing::info!(
            team_id,
            new_users = missing.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "sync: the snapshot is valid"
        );
        if dry_run {
            return Ok(SyncOutcome {
                report,
                dry_run,
                elapsed_ms: started.elapsed().as_millis() as u64,
            });
        }

        if !missing.is_empty() {
            let registered = self
                .store
                .register_users(&caller.appid, &missing, now)
                .await?;
            for (user, user_id) in missing.iter().zip(registered) {
                if let Some(id) = users.get_mut(user.openid) {
                    *id = user_id;
                }
            }
        }
        // A million pending users are a hundred megabytes: gone before the plan is made again.
        drop(missing);
        self.commit_sync(&team, snapshot, options, &users, &members, started)
            .await
    }

    /// Decide the snapshot on a current copy under the team's write gate and commit it.
    async fn commit_sync(
        &self,
        team: &TeamRecord,
        snapshot: &Snapshot,
        options: SyncOptions,
        users: &HashMap<String, UserId>,
        members: &HashMap<UserId, MemberState>,
        started: Instant,
    ) -> ServiceResult<SyncOutcome> {
        let max_depth = self.settings.max_group_depth;
        let now = unix_now();
        let quota = self.team_quota(team).await?;
        let (planned, _) = self
            .directories
            .write(&*self.store, team, |d| {
                tracing::info!(
                    team_id = team.access.team_id,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "sync: planning on the current directory"
                );
                match sync::plan(d, snapshot, options, users, members, max_depth, now) {
                    Ok((changes, report)) => {
                        quota.check(d, Growth::from(&report))?;
                        tracing::info!(
                            team_id = team.access.team_id,
                            changes = changes.len(),
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "sync: writing the changes"
                        );
                        Ok((changes, Ok(report)))
                    }
                    Err(refusal) => Ok((Vec::new(), Err(refusal))),
                }
            })
            .await?;
        let report: Result<SyncReport, SyncRefusal> = planned;
        Ok(SyncOutcome {
            report: report.map_err(ServiceError::SyncRefused)?,
            dry_run: false,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
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
        dry_run: bool,
    ) -> ServiceResult<SyncOutcome> {
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
        let caller = Caller {
            appid,
            scope: crate::domain::access::AppScope::Team(org_id),
        };
        self.sync_directory(&caller, team_id, snapshot, options, dry_run)
            .await
    }
}
