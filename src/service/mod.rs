//! The operations contactsd offers, independent of HTTP.
//!
//! A [`Service`] joins the domain rules, the store and the process-local state (rate limits
//! and the cache of directories). The HTTP layer and the command line both call it, so a rule
//! holds the same way whichever door a change comes through.

mod auth;
mod committer;
mod directories;
mod events;
mod groups;
mod members;
mod orgs;
mod quotas;
mod recent;
pub mod scim;
mod sync;
mod users;
pub mod webhooks;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;

pub use auth::{Credentials, IssuedToken};
pub use events::{EventFeed, EventSettings};
pub use groups::{GroupUpdate, NewGroupRequest};
pub use members::{MemberRow, MemberUpdate};
pub use orgs::{CreatedOrg, OrgView};
pub use quotas::{QuotaKind, QuotaSettings};
pub use sync::{SyncOutcome, SyncSlot};
pub use webhooks::{WebhookRequest, WebhookSettings};

use crate::domain::RuleError;
use crate::domain::access::{Caller, Denied, Plan};
use crate::domain::sync::SyncRefusal;
use crate::domain::values::{OrgId, TeamId, UserId};
use crate::metrics::{Metrics, Sample};
use crate::store::quotas::OrgQuota;
use crate::store::{
    DanglingKind, DanglingReferences, MemberProfile, Store, StoreError, TeamRecord, TokenRecord,
};
use auth::RateLimits;
use directories::Directories;
use recent::Recent;
use sync::SyncSlots;

/// The directory cache's default budget, in MiB: on the 2-core, 24 GiB machine the service is
/// sized for, half the memory, leaving the rest for syncs in flight (about 1 GB each at the
/// largest directory the default quotas allow) and the system.
pub const DEFAULT_CACHE_MEMORY_MB: usize = 12 * 1024;

/// Settings that change what the service answers.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// Token lifetime in seconds.
    pub token_ttl: u64,
    /// Calls per second per appid; 0 = unlimited.
    pub rate_limit: u32,
    /// Token calls per minute per appid (counted once the secret is right); 0 = unlimited.
    pub token_rate_limit: u32,
    /// Failed token calls (unknown appid or wrong secret) per minute per client address; an
    /// address past it is refused for a while whatever it sends; 0 = unlimited.
    pub token_failure_limit: u32,
    pub max_group_depth: u32,
    /// Admin seats of orgs created through the API.
    pub default_admin_seats: i64,
    /// How long a token's or a team's record read from the database is trusted before it is
    /// read again; zero reads it on every call. Changes made through this process are seen at
    /// once whatever the setting; changes made by another process within this time, except
    /// tokens and secrets, which take effect at once on every process.
    pub read_cache_ttl: Duration,
    /// Syncs in flight in the process; one more is refused with `sync_in_progress`.
    pub max_syncs: usize,
    /// Syncs in flight per team (below `max_syncs`, so one team cannot take every slot).
    pub max_syncs_per_team: usize,
    /// Estimated bytes the in-memory copies of directories may hold together; past it the
    /// least recently used are dropped and loaded again when next used.
    pub cache_memory: usize,
    /// Default quotas of every team and platform app.
    pub quotas: QuotaSettings,
    /// The change feed's retention and waiting callers.
    pub events: EventSettings,
    /// Webhook subscriptions and their delivery.
    pub webhooks: WebhookSettings,
}

impl Default for ServiceSettings {
    fn default() -> Self {
        ServiceSettings {
            token_ttl: 7200,
            rate_limit: 20,
            token_rate_limit: 60,
            token_failure_limit: 60,
            max_group_depth: 15,
            default_admin_seats: 10,
            read_cache_ttl: Duration::ZERO,
            max_syncs: 2,
            max_syncs_per_team: 1,
            cache_memory: DEFAULT_CACHE_MEMORY_MB << 20,
            quotas: QuotaSettings::default(),
            events: EventSettings::default(),
            webhooks: WebhookSettings::default(),
        }
    }
}

/// Why an operation was refused or failed. Each variant is one `error.type` of the contract
/// (rule violations come wrapped from the domain).
#[derive(Debug, Error)]
pub enum ServiceError {
    #[error(transparent)]
    Rule(#[from] RuleError),
    #[error("no access token was given")]
    MissingAccessToken,
    #[error("the access token is unknown, malformed, of another app, or superseded by a newer one")]
    InvalidAccessToken,
    #[error("the access token has expired")]
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
    #[error("the {0:?} quota would be exceeded")]
    QuotaExceeded(QuotaKind),
    #[error("rate limited; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the snapshot cannot be applied")]
    SyncRefused(SyncRefusal),
    #[error("{0}")]
    SyncInProgress(&'static str),
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
    /// Token records by token digest, with the store's change stamp taken before each was
    /// read: an entry serves only while the stamp is unchanged, so a token superseded or a
    /// secret rotated through any process is refused at once.
    tokens: Recent<Vec<u8>, (u64, TokenRecord)>,
    /// Teams by SCIM token digest, kept the same way.
    scim_tokens: Recent<Vec<u8>, (u64, TeamRecord)>,
    teams: Recent<TeamId, TeamRecord>,
    /// Names and avatars of listed members, with the directory version they were read at:
    /// an entry serves only that version, so a change to the directory retires it at once.
    profiles: Recent<(TeamId, UserId), (i64, MemberProfile)>,
    sync_slots: SyncSlots,
    /// Quotas set for an org (`admin set-quota`), read as lately as the team records.
    org_quotas: Recent<OrgId, OrgQuota>,
    /// Where the service records what it does; `None` with metrics off.
    metrics: Option<Arc<Metrics>>,
}

impl Service {
    pub fn new(store: Arc<dyn Store>, settings: ServiceSettings) -> Service {
        Service {
            limits: RateLimits::new(
                settings.rate_limit,
                settings.token_rate_limit,
                settings.token_failure_limit,
            ),
            directories: Directories::new(settings.cache_memory, store.clone()),
            tokens: Recent::new(settings.read_cache_ttl),
            scim_tokens: Recent::new(settings.read_cache_ttl),
            teams: Recent::new(settings.read_cache_ttl),
            profiles: Recent::new(settings.read_cache_ttl),
            sync_slots: SyncSlots::new(settings.max_syncs, settings.max_syncs_per_team),
            org_quotas: Recent::new(settings.read_cache_ttl),
            metrics: None,
            store,
            settings,
        }
    }

    /// The service recording into `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Service {
        self.directories.set_metrics(metrics.clone());
        self.metrics = Some(metrics);
        self
    }

    /// The metrics the service records into, if metrics are on.
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// Every metric in the Prometheus text format, with the values sampled now; `None` with
    /// metrics off.
    pub async fn render_metrics(&self) -> Option<String> {
        let metrics = self.metrics.as_ref()?;
        let webhooks = match self.store.webhook_backlog().await {
            Ok(backlog) => Some(backlog),
            Err(error) => {
                tracing::warn!(%error, "cannot read the webhook backlog for the metrics");
                None
            }
        };
        let sample = Sample {
            cache_bytes: self.directories.cached_bytes(),
            cache_entries: self.directories.cached_entries(),
            event_waiters: self.directories.waiting(),
            pools: self.store.pool_use(),
            webhooks,
        };
        Some(metrics.render(&sample))
    }

    /// Estimated bytes held by the in-memory copies of directories (within the budget, or one
    /// directory larger than it).
    pub fn cached_directory_bytes(&self) -> usize {
        self.directories.cached_bytes()
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
        let found = self.store.dangling_references().await?;
        Ok(found.iter().map(dangling_line).collect())
    }
}

/// `team 7: 2 memberships of a user who is not a member`, or without the team for rows that
/// belong to none.
fn dangling_line(found: &DanglingReferences) -> String {
    let problem = match found.kind {
        DanglingKind::MembershipOfNonMember => "memberships of a user who is not a member",
        DanglingKind::MembershipOutsideTeam => "memberships in a group outside the team",
        DanglingKind::MemberNotUser => "members who are not users",
        DanglingKind::MemberOfMissingTeam => "members of a team that does not exist",
        DanglingKind::OpenidOfMissingUser => "openids of a user that does not exist",
        DanglingKind::OpenidOfMissingApp => "openids of an app that does not exist",
    };
    match found.team_id {
        Some(team_id) => format!("team {team_id}: {} {problem}", found.count),
        None => format!("{} {problem}", found.count),
    }
}
