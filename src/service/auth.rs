//! Apps, secrets, tokens and rate limits (§3): calls and token calls per appid, and failed
//! token calls per client address.
//!
//! A token call's secret is checked before the appid's token limit is charged, and failures are
//! limited per client address instead: a stranger who knows an appid cannot spend its owner's
//! token calls, and an unknown appid and a wrong secret get the same answers under the same
//! limit, so the answers do not tell which appids exist.
//!
//! Secrets and tokens are generated here from the operating system's random source and only
//! their SHA-256 digests are stored. Both are long random strings (190+ bits), so a fast digest
//! is as safe as a password hash against a stolen database, and it keeps the per-request token
//! check to one indexed lookup.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Service, ServiceError, ServiceResult, unix_now};
use crate::domain::RuleError;
use crate::domain::access::{AppScope, Caller, Plan};
use crate::domain::values::OrgId;
use crate::metrics::{Limit, TokenOutcome};
use crate::store::NewApp;

const ALPHANUMERIC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const LOWER_ALPHANUMERIC: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias).
fn random_string(len: usize, alphabet: &[u8]) -> String {
    let limit = 256 - (256 % alphabet.len());
    let mut out = String::with_capacity(len);
    let mut buffer = [0u8; 64];
    while out.len() < len {
        // The OS random source failing is not something a request can cause or recover from.
        getrandom::fill(&mut buffer).expect("the operating system's random source failed");
        for byte in buffer {
            if (byte as usize) < limit && out.len() < len {
                out.push(alphabet[byte as usize % alphabet.len()] as char);
            }
        }
    }
    out
}

pub(super) fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A new bearer token: 48 random letters and digits (285 bits).
pub(super) fn random_token() -> String {
    random_string(48, ALPHANUMERIC)
}

/// A new webhook signing secret: 40 random letters and digits (238 bits).
pub(super) fn random_webhook_secret() -> String {
    random_string(40, ALPHANUMERIC)
}

/// A new app's public id and its secret (shown once).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub appid: String,
    pub secret: String,
}

/// A freshly issued token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
}

/// Per-appid and per-address limits, counted in this process.
pub(super) struct RateLimits {
    calls: Option<DefaultKeyedRateLimiter<String>>,
    token_calls: Option<DefaultKeyedRateLimiter<String>>,
    failed_secrets: Option<FailedSecrets>,
}

/// Failed token calls per client address. An address that used up its failures is refused
/// before its next call is even looked at, whatever appid and secret it sends, until the
/// limiter lets it try again: otherwise the refusal would only follow a wrong secret, and a
/// right one would still be told apart.
struct FailedSecrets {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    /// Addresses refused until the given instant.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

/// Addresses kept by [`FailedSecrets`] before the ones that are no longer limited are dropped.
const ADDRESSES_KEPT: usize = 10_000;

/// The key of calls whose client address is unknown (not through the HTTP server).
const UNKNOWN_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

impl FailedSecrets {
    fn blocked(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.blocked.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refuse an address that is still paying for its failures.
    fn check(&self, client: IpAddr) -> ServiceResult<()> {
        match self.blocked().get(&client) {
            Some(until) if *until > Instant::now() => Err(rate_limited(*until - Instant::now())),
            _ => Ok(()),
        }
    }

    /// Count a failure of `client`; past the limit, block it for as long as the limiter says
    /// and answer that instead of the failure.
    fn record(&self, client: IpAddr) -> ServiceError {
        if self.limiter.len() > ADDRESSES_KEPT {
            self.limiter.retain_recent();
        }
        if let Err(not_until) = self.limiter.check_key(&client) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            let now = Instant::now();
            let mut blocked = self.blocked();
            if blocked.len() > ADDRESSES_KEPT {
                blocked.retain(|_, until| *until > now);
            }
            blocked.insert(client, now + wait);
            return rate_limited(wait);
        }
        ServiceError::InvalidCredential
    }
}

fn rate_limited(wait: Duration) -> ServiceError {
    ServiceError::RateLimited {
        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

fn limiter(quota: Option<Quota>) -> Option<DefaultKeyedRateLimiter<String>> {
    quota.map(RateLimiter::keyed)
}

impl RateLimits {
    pub(super) fn new(
        per_second: u32,
        token_per_minute: u32,
        failures_per_minute: u32,
    ) -> RateLimits {
        RateLimits {
            calls: limiter(NonZeroU32::new(per_second).map(Quota::per_second)),
            token_calls: limiter(NonZeroU32::new(token_per_minute).map(Quota::per_minute)),
            failed_secrets: NonZeroU32::new(failures_per_minute).map(|rate| FailedSecrets {
                limiter: RateLimiter::keyed(Quota::per_minute(rate)),
                blocked: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn check(limiter: &Option<DefaultKeyedRateLimiter<String>>, appid: &str) -> ServiceResult<()> {
        let Some(limiter) = limiter else {
            return Ok(());
        };
        limiter.check_key(&appid.to_owned()).map_err(|not_until| {
            rate_limited(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }
}

impl Service {
    /// `GET /api/oauth2/access_token`: a new token that replaces every earlier one of the app.
    /// `client` is the caller's address (`None`: unknown, all such callers share one limit).
    pub async fn issue_token(
        &self,
        appid: &str,
        secret: &str,
        grant_type: &str,
        client: Option<IpAddr>,
    ) -> ServiceResult<IssuedToken> {
        let issued = match grant_type {
            "client_credential" => {
                self.issue(appid, secret, client.unwrap_or(UNKNOWN_CLIENT))
                    .await
            }
            _ => Err(RuleError::invalid("grant_type must be client_credential").into()),
        };
        if let Some(metrics) = &self.metrics {
            metrics.token_call(match &issued {
                Ok(_) => TokenOutcome::Issued,
                Err(ServiceError::InvalidCredential) => TokenOutcome::InvalidCredential,
                Err(ServiceError::RateLimited { .. }) => TokenOutcome::RateLimited,
                Err(_) => TokenOutcome::Refused,
            });
        }
        issued
    }

    /// Count one call under `key` against the per-appid call limit.
    pub(super) fn check_call(&self, key: &str) -> ServiceResult<()> {
        RateLimits::check(&self.limits.calls, key).inspect_err(|_| self.count_refusal(Limit::Calls))
    }

    /// A rate limit refused a call.
    fn count_refusal(&self, limit: Limit) {
        if let Some(metrics) = &self.metrics {
            metrics.limit_refusal(limit);
        }
    }

    /// A token for `appid` if `secret` is its secret, `client` asking.
    async fn issue(&self, appid: &str, secret: &str, client: IpAddr) -> ServiceResult<IssuedToken> {
        if let Some(failures) = &self.limits.failed_secrets {
            failures
                .check(client)
                .inspect_err(|_| self.count_refusal(Limit::TokenFailures))?;
        }
        // Appids are short ASCII letters and digits; anything else names no app (and some
        // values, a NUL byte among them, cannot even be sent to PostgreSQL).
        let well_formed = !appid.is_empty()
            && appid.len() <= 64
            && appid.bytes().all(|b| b.is_ascii_alphanumeric());
        let presented = digest(secret);
        let app = match well_formed {
            true => self.store.app(appid).await?,
            false => None,
        };
        let app = match app {
            Some(app) if bool::from(presented.ct_eq(&app.secret_hash)) => app,
            _ => {
                return Err(match &self.limits.failed_secrets {
                    Some(failures) => match failures.record(client) {
                        ServiceError::InvalidCredential => ServiceError::InvalidCredential,
                        blocked => {
                            self.count_refusal(Limit::TokenFailures);
                            blocked
                        }
                    },
                    None => ServiceError::InvalidCredential,
                });
            }
        };
        RateLimits::check(&self.limits.token_calls, &app.appid)
            .inspect_err(|_| self.count_refusal(Limit::TokenCalls))?;
        if let Some(org_id) = app.org_id {
            let org = self
                .store
                .org_access(org_id)
                .await?
                .ok_or(ServiceError::InvalidCredential)?;
            if org.plan == Plan::Free {
                return Err(ServiceError::Subscription);
            }
        }
        let token = random_token();
        let ttl = self.settings.token_ttl;
        self.store
            .put_token(&app.appid, &digest(&token), unix_now() + ttl as i64)
            .await?;
        // The app's earlier token stops working in this process at once.
        self.tokens.forget(|(_, record)| record.appid == app.appid);
        Ok(IssuedToken {
            access_token: token,
            expires_in: ttl,
        })
    }

    /// The app behind `token`, if the token is its latest and has not expired, and the app is
    /// within its call rate. `appid`, when given, must name the same app.
    pub async fn authenticate(&self, token: &str, appid: Option<&str>) -> ServiceResult<Caller> {
        if token.is_empty() {
            return Err(ServiceError::MissingAccessToken);
        }
        if token.len() > 256 {
            return Err(ServiceError::InvalidAccessToken);
        }
        let digest = digest(token);
        // A record read before anything was committed since (by any process) is still the
        // database's; otherwise, or when the store cannot tell, it is read again.
        let stamp = self.store.change_stamp();
        let record = self
            .tokens
            .stamped(digest.clone(), stamp, self.store.token(&digest))
            .await?
            .ok_or(ServiceError::InvalidAccessToken)?;
        if appid.is_some_and(|appid| appid != record.appid) {
            return Err(ServiceError::InvalidAccessToken);
        }
        if record.expires_at <= unix_now() {
            return Err(ServiceError::AccessTokenExpired);
        }
        self.check_call(&record.appid)?;
        Ok(Caller {
            scope: match record.org_id {
                Some(org) => AppScope::Team(org),
                None => AppScope::Platform,
            },
            appid: record.appid,
            request_id: None,
        })
    }

    async fn new_app(&self, name: &str, org_id: Option<OrgId>) -> ServiceResult<Credentials> {
        let credentials = Credentials {
            appid: format!("tpid{}", random_string(8, LOWER_ALPHANUMERIC)),
            secret: random_string(40, ALPHANUMERIC),
        };
        self.store
            .create_app(
                NewApp {
                    appid: credentials.appid.clone(),
                    name: name.to_owned(),
                    org_id,
                    secret_hash: digest(&credentials.secret),
                },
                unix_now(),
            )
            .await?;
        Ok(credentials)
    }

    /// `admin create-platform-app`.
    pub async fn create_platform_app(&self, name: &str) -> ServiceResult<Credentials> {
        self.new_app(name, None).await
    }

    /// A team app for `org_id` (used by `admin create-org`).
    pub async fn create_team_app(&self, name: &str, org_id: OrgId) -> ServiceResult<Credentials> {
        self.new_app(name, Some(org_id)).await
    }

    /// `admin rotate-secret`: a new secret; the old one and the current token stop working.
    pub async fn rotate_secret(&self, appid: &str) -> ServiceResult<Credentials> {
        let secret = random_string(40, ALPHANUMERIC);
        if !self.store.set_secret(appid, &digest(&secret)).await? {
            return Err(ServiceError::InvalidCredential);
        }
        self.tokens.forget(|(_, record)| record.appid == appid);
        Ok(Credentials {
            appid: appid.to_owned(),
            secret,
        })
    }

    /// Is the database still without any app (a first start)?
    pub async fn is_empty(&self) -> ServiceResult<bool> {
        Ok(self.store.count_apps().await? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_strings_use_only_their_alphabet() {
        let s = random_string(500, LOWER_ALPHANUMERIC);
        assert_eq!(s.len(), 500);
        assert!(s.bytes().all(|b| LOWER_ALPHANUMERIC.contains(&b)));
        assert_ne!(
            random_string(40, ALPHANUMERIC),
            random_string(40, ALPHANUMERIC)
        );
    }

    #[test]
    fn rate_limits_answer_with_a_retry_delay_of_at_least_one_second() {
        let limits = RateLimits::new(2, 0, 0);
        assert!(RateLimits::check(&limits.calls, "a").is_ok());
        assert!(RateLimits::check(&limits.calls, "a").is_ok());
        match RateLimits::check(&limits.calls, "a") {
            Err(ServiceError::RateLimited { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        assert!(RateLimits::check(&limits.calls, "b").is_ok());
        assert!(RateLimits::check(&limits.token_calls, "a").is_ok());
    }

    #[test]
    fn an_address_past_its_failures_is_refused_whatever_it_sends_and_others_are_not() {
        let limits = RateLimits::new(0, 0, 2);
        let failures = limits.failed_secrets.as_ref().expect("limited");
        let attacker = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
        let owner = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..2 {
            assert!(failures.check(attacker).is_ok());
            assert!(matches!(
                failures.record(attacker),
                ServiceError::InvalidCredential
            ));
        }
        assert!(matches!(
            failures.record(attacker),
            ServiceError::RateLimited { .. }
        ));
        match failures.check(attacker) {
            Err(ServiceError::RateLimited { retry_after_secs }) => assert!(retry_after_secs >= 1),
            other => panic!("expected a rate limit, got {other:?}"),
        }
        assert!(failures.check(owner).is_ok());
    }
}
