//! Member operations (§6): add, update, remove, list.

use std::collections::HashMap;

use super::directories::Origin;
use super::quotas::Growth;
use super::{Service, ServiceResult};
use crate::domain::access::Caller;
use crate::domain::directory::{
    Change, GroupRef, GroupStep, Kept, MemberFilter, MemberRow as StoredMember, Placement,
};
use crate::domain::events::{ActorKind, PriorProfiles};
use crate::domain::values::{
    Avatar, GroupId, Nickname, Page, ROOT_GROUP, Role, Source, TeamId, UserId,
};
use crate::store::MemberDetails;

/// One row of a member listing, as the contract shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRow {
    pub user_id: UserId,
    pub respondent_id: i64,
    pub name: String,
    pub avatar: String,
    pub role: Role,
    pub group_id: GroupId,
    pub group_full_name: String,
}

/// `POST /api/contacts/teams/{team_id}/users/{user_id}`, validated.
#[derive(Debug, Clone, Default)]
pub struct MemberUpdate {
    pub group_ids: Option<Vec<GroupId>>,
    pub nickname: Option<Nickname>,
    pub avatar: Option<Avatar>,
    pub role: Option<Role>,
}

/// The details a user who is not a member yet starts with; also those of a member row whose
/// stored name and avatar are kept ([`Change::StepMember`]).
fn newcomer() -> MemberDetails {
    MemberDetails {
        role: Role::Member,
        nickname: Nickname::default(),
        avatar: Avatar::default(),
    }
}

/// Member `user_id`'s row as an app writes it.
fn row(user_id: UserId, role: Role, details: &MemberDetails) -> StoredMember {
    StoredMember {
        user_id,
        role,
        nickname: details.nickname.clone(),
        avatar: details.avatar.clone(),
        source: Source::Api,
    }
}

/// Member `user_id` updated to `placement` and `details`: a rename or a new role leaves the
/// memberships as they are, and the stored name or avatar the update does not give stays.
fn put(
    user_id: UserId,
    placement: &Placement,
    details: &MemberDetails,
    update: &MemberUpdate,
) -> Change {
    let groups = update.group_ids.is_some().then_some(&placement.groups[..]);
    Change::PutMember {
        member: row(user_id, placement.role, details),
        groups: groups.map(|groups| groups.iter().map(|g| GroupRef::Existing(*g)).collect()),
        kept: Kept {
            nickname: update.nickname.is_none(),
            avatar: update.avatar.is_none(),
        },
    }
}

/// One member's name and avatar before a change.
struct Prior<'a>(UserId, &'a MemberDetails);

impl PriorProfiles for Prior<'_> {
    fn prior(&self, user_id: UserId) -> Option<(&str, &str)> {
        (user_id == self.0).then_some((self.1.nickname.as_str(), self.1.avatar.as_str()))
    }
}

/// An app's change of member `user_id`, whose details were `prior`.
fn origin<'a>(caller: &Caller, prior: &'a Prior<'a>) -> Origin<'a> {
    Origin {
        actor: caller.actor(ActorKind::App),
        profiles: prior,
    }
}

impl Service {
    async fn details_of(&self, team_id: TeamId, user_id: UserId) -> ServiceResult<MemberDetails> {
        Ok(self
            .store
            .member_details(team_id, user_id)
            .await?
            .unwrap_or_else(newcomer))
    }

    /// Add a user to `group_id` (0 = the root), joining the directory if needed. The user must
    /// be one the caller's tenant registered ([`Service::is_tenant_user`]) or already a member
    /// here; any other id answers as an unknown one.
    pub async fn add_member(
        &self,
        caller: &Caller,
        team_id: TeamId,
        group_id: GroupId,
        user_id: UserId,
        role: Role,
    ) -> ServiceResult<()> {
        let team = self.team_for(caller, team_id).await?;
        // A member joining one more group keeps its stored name and avatar (a step does not
        // rewrite them, and its event lists only what changed): nothing to read first.
        let held = self
            .directories
            .read(&*self.store, &team, |d| Ok(d.placement(user_id).is_some()))
            .await?;
        if held {
            let (stepped, _) = self
                .directories
                .write(&*self.store, &team, Origin::app(caller), |d| {
                    let admission = d.check_admission(user_id, group_id, role)?;
                    if admission.joins_directory {
                        // Removed meanwhile: admitted below, as a user new to the directory.
                        return Ok((Vec::new(), false));
                    }
                    let member = row(user_id, admission.role, &newcomer());
                    Ok((vec![admission.change(member)], true))
                })
                .await?;
            if stepped {
                return Ok(());
            }
        }
        let member = self.store.member_details(team_id, user_id).await?;
        if member.is_none() && !self.is_tenant_user(caller, user_id).await? {
            return Err(crate::domain::RuleError::ContactsUserNotFound.into());
        }
        let details = member.unwrap_or_else(newcomer);
        let quota = self.team_quota(&team).await?;
        let prior = Prior(user_id, &details);
        self.directories
            .write(&*self.store, &team, origin(caller, &prior), |d| {
                let admission = d.check_admission(user_id, group_id, role)?;
                if admission.joins_directory {
                    let one_more = Growth {
                        members_added: 1,
                        ..Growth::default()
                    };
                    quota.check(d, one_more)?;
                }
                let member = row(user_id, admission.role, &details);
                Ok((vec![admission.change(member)], ()))
            })
            .await?;
        Ok(())
    }

    pub async fn update_member(
        &self,
        caller: &Caller,
        team_id: TeamId,
        user_id: UserId,
        update: &MemberUpdate,
    ) -> ServiceResult<()> {
        let team = self.team_for(caller, team_id).await?;
        // The stored name and avatar are written only as the update gives them: they are read
        // for the event's `before` alone, and not at all by a move or a new role.
        let before = if update.nickname.is_none() && update.avatar.is_none() {
            newcomer()
        } else {
            self.details_of(team_id, user_id).await?
        };
        let mut details = before.clone();
        if let Some(nickname) = &update.nickname {
            details.nickname = nickname.clone();
        }
        if let Some(avatar) = &update.avatar {
            details.avatar = avatar.clone();
        }
        let prior = Prior(user_id, &before);
        self.directories
            .write(&*self.store, &team, origin(caller, &prior), |d| {
                let group_ids = update.group_ids.as_deref();
                let placement = d.check_member_update(user_id, group_ids, update.role)?;
                Ok((vec![put(user_id, &placement, &details, update)], ()))
            })
            .await?;
        Ok(())
    }

    /// Remove a member from `group_id`, or from the directory for group 0.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        team_id: TeamId,
        group_id: GroupId,
        user_id: UserId,
    ) -> ServiceResult<()> {
        let team = self.team_for(caller, team_id).await?;
        // A member leaving one group keeps its stored name and avatar: nothing to read first.
        self.directories
            .write(&*self.store, &team, Origin::app(caller), |d| {
                let change = match d.check_removal(user_id, group_id)? {
                    None => Change::RemoveMember(user_id),
                    Some(role) => Change::StepMember {
                        member: row(user_id, role, &newcomer()),
                        group: group_id,
                        step: GroupStep::Leave,
                    },
                };
                Ok((vec![change], ()))
            })
            .await?;
        Ok(())
    }

    pub async fn list_members(
        &self,
        caller: &Caller,
        team_id: TeamId,
        filter: &MemberFilter,
        page: Page,
    ) -> ServiceResult<(Vec<MemberRow>, u64)> {
        let team = self.team_for(caller, team_id).await?;
        let (listing, total, version) = self
            .directories
            .read(&*self.store, &team, |d| {
                let (rows, total) = d.list_members(filter, page)?;
                let named: Vec<_> = rows
                    .into_iter()
                    .map(|row| {
                        let full_name = if row.group_id == ROOT_GROUP {
                            d.team_name().to_owned()
                        } else {
                            d.full_name(row.group_id)
                        };
                        (row, full_name)
                    })
                    .collect();
                Ok((named, total, d.version()))
            })
            .await?;
        // Names and avatars live in the database; those read lately for this version of the
        // directory are reused.
        let mut profiles = HashMap::with_capacity(listing.len());
        let mut missing = Vec::new();
        for (row, _) in &listing {
            match self.profiles.get(&(team_id, row.user_id)) {
                Some((read_at, profile)) if read_at == version => {
                    profiles.insert(row.user_id, profile);
                }
                _ => missing.push(row.user_id),
            }
        }
        if !missing.is_empty() {
            for profile in self.store.member_profiles(team_id, &missing).await? {
                self.profiles
                    .put((team_id, profile.user_id), (version, profile.clone()));
                profiles.insert(profile.user_id, profile);
            }
        }
        let rows = listing
            .into_iter()
            .filter_map(|(row, group_full_name)| {
                // A member removed between the two reads is left out of this page.
                let profile = profiles.get(&row.user_id)?;
                Some(MemberRow {
                    user_id: row.user_id,
                    respondent_id: profile.respondent_id,
                    name: profile.name.to_string(),
                    avatar: profile.avatar.to_string(),
                    role: row.role,
                    group_id: row.group_id,
                    group_full_name,
                })
            })
            .collect();
        Ok((rows, total))
    }
}
