//! Webhook subscriptions (§11), without I/O: what a subscription listens to, the rules on its
//! URL and secret, its retry schedule, and which network addresses a delivery may never reach.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::RuleError;
use super::values::{EventSeq, TeamId, WebhookId};

/// The longest URL accepted.
pub const MAX_URL_BYTES: usize = 2048;
/// The longest secret accepted.
pub const MAX_SECRET_BYTES: usize = 256;
/// The shortest secret accepted: a signature keyed by a guessable secret proves nothing.
pub const MIN_SECRET_BYTES: usize = 16;

/// What a subscription can listen to: the part of an event's `type` before the dot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Resource {
    Group,
    Member,
    Sync,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Group, Resource::Member, Resource::Sync];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Group => "group",
            Resource::Member => "member",
            Resource::Sync => "sync",
        }
    }

    pub fn parse(raw: &str) -> Option<Resource> {
        Resource::ALL
            .into_iter()
            .find(|resource| resource.as_str() == raw)
    }
}

/// The resources a subscription listens to: a non-empty set, kept sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listened(Vec<Resource>);

impl Listened {
    /// Every resource (a subscription created without `listenedResources`).
    pub fn all() -> Listened {
        Listened(Resource::ALL.to_vec())
    }

    /// From the names a client sent: at least one, each `group`, `member` or `sync`.
    pub fn from_names<S: AsRef<str>>(names: &[S]) -> Result<Listened, RuleError> {
        let mut resources = names
            .iter()
            .map(|name| {
                Resource::parse(name.as_ref()).ok_or_else(|| {
                    RuleError::invalid("listenedResources may hold only group, member and sync")
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        resources.sort();
        resources.dedup();
        if resources.is_empty() {
            return Err(RuleError::invalid("listenedResources must not be empty"));
        }
        Ok(Listened(resources))
    }

    /// As stored: the names joined by commas.
    pub fn stored(&self) -> String {
        let names: Vec<&str> = self.0.iter().map(|resource| resource.as_str()).collect();
        names.join(",")
    }

    /// From the stored form (unknown names are skipped).
    pub fn from_stored(stored: &str) -> Listened {
        Listened(stored.split(',').filter_map(Resource::parse).collect())
    }

    pub fn resources(&self) -> &[Resource] {
        &self.0
    }

    /// Whether an event of this `type` (`group.created`, `sync.applied`, ...) is delivered.
    pub fn hears(&self, event_type: &str) -> bool {
        let kind = event_type.split('.').next().unwrap_or_default();
        self.0.iter().any(|resource| resource.as_str() == kind)
    }
}

/// Whether a subscription is delivered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookState {
    /// Delivered to (possibly retrying after failures: see `attempts`).
    Active,
    /// Not delivered to: paused by a client, or after failing for the whole retry budget.
    Paused,
}

impl WebhookState {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookState::Active => "active",
            WebhookState::Paused => "paused",
        }
    }

    pub fn from_stored(stored: &str) -> WebhookState {
        if stored == "active" {
            WebhookState::Active
        } else {
            WebhookState::Paused
        }
    }
}

/// A stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub team_id: TeamId,
    pub url: String,
    pub secret: String,
    pub state: WebhookState,
    pub listened: Listened,
    /// The last event the receiver acknowledged (or that was skipped as not listened to).
    pub acked_seq: EventSeq,
    /// Failed attempts since the last success.
    pub attempts: i64,
    /// Unix milliseconds of the next attempt while retrying.
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// A delivery attempt, as the deliveries log keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    /// Unix milliseconds.
    pub time: i64,
    pub first_seq: EventSeq,
    pub last_seq: EventSeq,
    pub events: i64,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// A webhook URL: absolute `http` or `https`, with a host, at most [`MAX_URL_BYTES`].
/// Answers the host and port to vet.
pub fn check_url(raw: &str) -> Result<url::Url, RuleError> {
    if raw.len() > MAX_URL_BYTES {
        return Err(RuleError::invalid(format!(
            "url must be at most {MAX_URL_BYTES} bytes"
        )));
    }
    let url = url::Url::parse(raw)
        .map_err(|_| RuleError::invalid("url must be an absolute http or https URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RuleError::invalid("url must use http or https"));
    }
    if url.host().is_none() {
        return Err(RuleError::invalid("url must name a host"));
    }
    Ok(url)
}

/// A client's secret: [`MIN_SECRET_BYTES`] to [`MAX_SECRET_BYTES`] printable ASCII characters.
pub fn check_secret(raw: &str) -> Result<(), RuleError> {
    let printable = raw.bytes().all(|byte| byte.is_ascii_graphic());
    if !printable || !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&raw.len()) {
        return Err(RuleError::invalid(format!(
            "secret must be {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} printable ASCII characters"
        )));
    }
    Ok(())
}

/// Whether a delivery may never connect to `address` (unless private targets are allowed):
/// loopback, private (RFC 1918, unique local), link-local, shared (CGNAT), unspecified,
/// multicast, broadcast, documentation and benchmarking ranges, and cloud metadata addresses.
/// IPv4 addresses mapped into IPv6 are judged as IPv4.
pub fn is_forbidden_address(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_forbidden_v4(v4),
            None => is_forbidden_v6(v6),
        },
    }
}

fn is_forbidden_v4(address: Ipv4Addr) -> bool {
    let [a, b, ..] = address.octets();
    address.is_loopback()
        || address.is_private()
        || address.is_link_local()
        || address.is_unspecified()
        || address.is_multicast()
        || address.is_broadcast()
        || address.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn is_forbidden_v6(address: Ipv6Addr) -> bool {
    let first = address.segments()[0];
    address.is_loopback()
        || address.is_unspecified()
        || address.is_multicast()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || first == 0x2001 && address.segments()[1] == 0x0db8
        || first == 0x0064 && address.segments()[1] == 0xff9b
}

/// The retry schedule: how long to wait after `attempts` consecutive failures, before jitter:
/// `first`, then doubling with each failure, up to `cap`.
pub fn backoff(attempts: i64, first: Duration, cap: Duration) -> Duration {
    let exponent = attempts.clamp(1, 32) as u32 - 1;
    first.saturating_mul(1u32 << exponent.min(31)).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_addresses() {
        for raw in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            let address: IpAddr = raw.parse().unwrap();
            assert!(is_forbidden_address(address), "{raw} should be refused");
        }
        for raw in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            let address: IpAddr = raw.parse().unwrap();
            assert!(!is_forbidden_address(address), "{raw} should be allowed");
        }
    }

    #[test]
    fn listened_resources() {
        let listened = Listened::from_names(&["sync", "group", "group"]).unwrap();
        assert_eq!(listened.stored(), "group,sync");
        assert!(listened.hears("group.created") && listened.hears("sync.applied"));
        assert!(!listened.hears("member.added"));
        assert!(Listened::from_names(&["groups"]).is_err());
        assert!(Listened::from_names::<&str>(&[]).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (first, cap) = (Duration::from_secs(1), Duration::from_secs(3600));
        assert_eq!(backoff(1, first, cap), Duration::from_secs(1));
        assert_eq!(backoff(4, first, cap), Duration::from_secs(8));
        assert_eq!(backoff(30, first, cap), cap);
    }
}
