//! The operations contactsd offers, independent of HTTP.
//!
//! A [`Service`] joins the domain rules, the store and the process-local state (rate limits
//! and the cache of directories). The HTTP layer and the command line both call it, so a rule
//! holds the same way whichever door a change comes through.

mod auth;
mod directories;
mod groups;
mod members;
mod orgs;
mod recent;
pub mod scim;
mod sync;
mod users;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

pub use auth::{Credentials, IssuedToken};
pub use groups::{GroupUpdate, NewGroupRequest};
pub use members::{MemberRow, MemberUpdate};
pub use orgs::{CreatedOrg, OrgView};
pub use sync::SyncOutcome;

use crate::domain::RuleError;
use crate::domain::access::{Caller, Denied, Plan};
use crate::domain::sync::SyncRefusal;
use crate::domain::values::{TeamId, UserId};
use crate::store::{MemberProfile, Store, StoreError, TeamRecord, TokenRecord};
use auth::RateLimits;
use directories::Directories;
use recent::Recent;

/// Settings that change what the service answers.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Token lifetime in seconds.
    pub token_ttl: u64,
    /// Calls per second per appid; 0 = unlimited.
    pub rate_limit: u32,
    /// Token calls per minute per appid; 0 = unlimited.
    pub token_rate_limit: u32,
    pub max_group_depth: u32,
    /// Admin seats of orgs created through the API.
    pub default_admin_seats: i64,
    /// How long a token's or a team's record read from the database is trusted before it is
    /// read again; zero reads it on every call. Changes made through this process are seen at
    /// once whatever the setting; changes made by another process within this time.
    pub read_cache_ttl: Duration,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            token_ttl: 7200,
            rate_limit: 20,
            token_rate_limit: 60,
            max_group_depth: 15,
            default_admin_seats: 10,
            read_cache_ttl: Duration::ZERO,
        }
    }
}

/// Why an operation was refused or failed. Each variant is one `error.type` of the contract
/// (rule violations come wrapped from the domain).
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("invalid access token")]
    InvalidAccessToken,
    #[error("access token expired")]
    AccessTokenExpired,
    #[error("invalid credential")]
    InvalidCredential,
    #[error("the app may not touch this resource")]
    Claim,
    #[error("the org's plan lacks this feature")]
    Subscription,
    #[error("contacts team not found")]
    TeamNotFound,
    #[error("user not found")]
    UserNotFound,
    #[error("org not found")]
    OrgNotFound,
    #[error("the creating user has created the most orgs allowed")]
    OrgResourceExhausted,
    #[error("rate limited; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the snapshot cannot be applied")]
    SyncRefused(SyncRefusal),
    #[error("the directory kept changing concurrently")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Denied> for ServiceError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Claim => ServiceError::Claim,
            Denied::Subscription => ServiceError::Subscription,
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;

/// The whole application behind the HTTP layer and the command line.
pub struct Service {
    store: Arc<dyn Store>,
    settings: ServiceSettings,
    limits: RateLimits,
    directories: Directories,
    /// Token records by token digest.
    tokens: Recent<Vec<u8>, TokenRecord>,
    teams: Recent<TeamId, TeamRecord>,
    /// Names and avatars of listed members, with the directory version they were read at:
    /// an entry serves only that version, so a change to the directory retires it at once.
    profiles: Recent<(TeamId, UserId), (i64, MemberProfile)>,
}

impl Service {
    pub fn new(store: Arc<dyn Store>, settings: ServiceSettings) -> Service {
        Service {
            limits: RateLimits::new(settings.rate_limit, settings.token_rate_limit),
            directories: Directories::default(),
            tokens: Recent::new(settings.read_cache_ttl),
            teams: Recent::new(settings.read_cache_ttl),
            profiles: Recent::new(settings.read_cache_ttl),
            store,
            settings,
        }
    }

    /// Does the database answer?
    pub async fn healthy(&self) -> bool {
        self.store.ping().await.is_ok()
    }

    /// Refuse early a caller that may not use the contacts features of `team_id` (before a
    /// large request body is read, for instance).
    pub async fn check_team_access(&self, caller: &Caller, team_id: TeamId) -> ServiceResult<()> {
        self.team_for(caller, team_id).await.map(|_| ())
    }

    /// The directory `team_id` if `caller` may use its contacts features.
    /// A team app never learns whether another team exists.
    async fn team_for(&self, caller: &Caller, team_id: TeamId) -> ServiceResult<TeamRecord> {
        let team = match self.teams.get(&team_id) {
            Some(team) => Some(team),
            None => {
                let team = self.store.team(team_id).await?;
                if let Some(team) = &team {
                    self.teams.put(team_id, team.clone());
                }
                team
            }
        };
        match team {
            Some(team) => {
                caller.may_touch(&team.access, Plan::Business)?;
                Ok(team)
            }
            None if caller.is_platform() => Err(ServiceError::TeamNotFound),
            None => Err(ServiceError::Claim),
        }
    }
}

/// Now, in unix seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// What `contactsd admin check` found in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryCheck {
    pub team_id: TeamId,
    pub groups: usize,
    pub members: usize,
    pub violations: Vec<String>,
}

impl Service {
    /// Load every directory from the database as stored and check every invariant from
    /// scratch (the cache is not used).
    pub async fn check_directories(&self) -> ServiceResult<Vec<DirectoryCheck>> {
        let max_depth = self.settings.max_group_depth;
        let mut checks = Vec::new();
        for team_id in self.store.team_ids().await? {
            let Some(directory) = self.store.load_directory(team_id).await? else {
                continue;
            };
            let mut violations = directory.violations(max_depth);
            if directory.admins_used() > directory.admin_seats() {
                violations.push(format!(
                    "{} members hold admin roles but the org has {} admin seats",
                    directory.admins_used(),
                    directory.admin_seats()
                ));
            }
            checks.push(DirectoryCheck {
                team_id,
                groups: directory.valid_group_count(),
                members: directory.member_count(),
                violations,
            });
        }
        Ok(checks)
    }

    /// Stored rows that name a user, member, group, team or app that does not exist: the
    /// referential half of `contactsd admin check`, one line per kind and team.
    pub async fn check_references(&self) -> ServiceResult<Vec<String>> {
        Ok(self.store.dangling_references().await?)
    }
}
