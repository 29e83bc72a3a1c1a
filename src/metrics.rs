//! Metrics: the process's counters, gauges and histograms, and their exposition in the
//! Prometheus text format (version 0.0.4) for `GET /metrics`.
//!
//! One [`Metrics`] per server, made at start-up when metrics are on and handed to the service,
//! the HTTP layer and the connection layer; with metrics off there is none and nothing is
//! recorded. Handles are registered once here, so recording is an atomic add or a short
//! uncontended lock. Every label takes its values from a small fixed set (route templates,
//! envelope codes, outcomes): never a team id, an appid or a raw path.
//!
//! Values that exist anyway (cache size, waiting callers, database connections) are not
//! tracked on every change but sampled when scraped: [`Metrics::render`] takes them as a
//! [`Sample`].

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Request latency buckets, in seconds: a listing takes well under a millisecond, a sync
/// minutes.
const REQUEST_SECONDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    10.0, 60.0,
];

/// Buckets of a commit's duration, in seconds.
const COMMIT_SECONDS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// Buckets of a directory load or a sync, in seconds (a million members: seconds to a minute).
const LONG_SECONDS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Buckets of the change sets one commit holds.
const BATCH_SIZES: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Buckets of a snapshot's groups or members.
const SNAPSHOT_SIZES: [f64; 8] = [
    10.0,
    100.0,
    1_000.0,
    10_000.0,
    100_000.0,
    1_000_000.0,
    10_000_000.0,
    100_000_000.0,
];

/// The `route` of a request no route matched.
const UNMATCHED: &str = "unmatched";

fn histogram(buckets: &[f64]) -> Histogram {
    Histogram::new(buckets.iter().copied())
}

fn request_histogram() -> Histogram {
    histogram(&REQUEST_SECONDS)
}

fn sync_histogram() -> Histogram {
    histogram(&LONG_SECONDS)
}

/// A route template, shared by every series of the route (interned: one allocation per
/// template for the process's life).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Route(Arc<str>);

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: Route,
    code: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: Route,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct QuotaLabels {
    quota: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
    state: &'static str,
}

/// A request's method as a label: the methods the API uses, anything else as `other` (a
/// client chooses the method, so it cannot choose the label).
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// What a request was answered with, for [`Metrics::request`].
pub struct Answered<'a> {
    pub method: &'a axum::http::Method,
    /// The route template (`MatchedPath`), `None` when no route matched.
    pub route: Option<&'a str>,
    /// The envelope's `code`, `None` for answers without an envelope (pages, SCIM).
    pub code: Option<&'static str>,
    pub status: u16,
    pub elapsed: Duration,
}

/// How a token call ended.
#[derive(Debug, Clone, Copy)]
pub enum TokenOutcome {
    Issued,
    InvalidCredential,
    /// Refused by a rate limit: the appid's token calls, or the client address's failures.
    RateLimited,
    /// Any other refusal or failure (a bad grant type, a free plan, the database).
    Refused,
}

/// The limit that refused a call.
#[derive(Debug, Clone, Copy)]
pub enum Limit {
    /// Calls per second per appid.
    Calls,
    /// Token calls per minute per appid.
    TokenCalls,
    /// Failed token calls per minute per client address.
    TokenFailures,
}

/// How a sync ended.
#[derive(Debug, Clone, Copy)]
pub enum SyncEnd {
    Applied,
    DryRun,
    /// The snapshot or its effect was refused (invalid, over a quota, ...).
    Refused,
    /// Another sync held the slot it needed.
    InProgress,
    /// The database failed.
    Failed,
}

impl SyncEnd {
    fn label(self) -> &'static str {
        match self {
            SyncEnd::Applied => "applied",
            SyncEnd::DryRun => "dry_run",
            SyncEnd::Refused => "refused",
            SyncEnd::InProgress => "in_progress",
            SyncEnd::Failed => "failed",
        }
    }
}

/// Connections of one database pool.
#[derive(Debug, Clone, Copy)]
pub struct PoolUse {
    /// `reads`, `writes` (SQLite's two pools) or `shared` (one pool for both).
    pub pool: &'static str,
    pub open: u32,
    pub idle: usize,
}

/// Undelivered events of the webhook subscriptions of every team, read from the database (so
/// that every process reports the same figures).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WebhookBacklog {
    /// Events committed and not yet acknowledged, summed over the subscriptions not paused.
    pub events: i64,
    /// Subscriptions not paused with at least one such event.
    pub behind: i64,
    /// Paused subscriptions (past their retry budget, or paused by their team).
    pub paused: i64,
}

/// Values sampled when the metrics are scraped.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub cache_bytes: usize,
    pub cache_entries: usize,
    pub event_waiters: usize,
    pub pools: Vec<PoolUse>,
    /// `None` when the database could not be asked: the gauges keep their last values.
    pub webhooks: Option<WebhookBacklog>,
}

/// Every metric of the process; see the module documentation.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    routes: RwLock<HashMap<Box<str>, Route>>,
    unmatched: Route,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    connections_refused: Counter,
    token_calls: Family<OutcomeLabels, Counter>,
    limit_refusals: Family<LimitLabels, Counter>,
    quota_refusals: Family<QuotaLabels, Counter>,
    cache_hits: Counter,
    cache_loads: Counter,
    cache_load_seconds: Histogram,
    cache_evictions: Counter,
    cache_bytes: Gauge,
    cache_entries: Gauge,
    commit_seconds: Histogram,
    commit_change_sets: Histogram,
    commit_conflicts: Counter,
    syncs: Family<OutcomeLabels, Counter>,
    sync_seconds: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    sync_groups: Histogram,
    sync_members: Histogram,
    event_waiters: Gauge,
    pool_connections: Family<PoolLabels, Gauge>,
    webhook_deliveries: Family<OutcomeLabels, Counter>,
    webhook_delivery_seconds: Histogram,
    webhook_lag_seconds: Histogram,
    webhook_backlog_events: Gauge,
    webhook_subscriptions_behind: Gauge,
    webhook_subscriptions_paused: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::with_prefix("contactsd"),
            routes: RwLock::default(),
            unmatched: Route(Arc::from(UNMATCHED)),
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(request_histogram),
            connections_refused: Counter::default(),
            token_calls: Family::default(),
            limit_refusals: Family::default(),
            quota_refusals: Family::default(),
            cache_hits: Counter::default(),
            cache_loads: Counter::default(),
            cache_load_seconds: histogram(&LONG_SECONDS),
            cache_evictions: Counter::default(),
            cache_bytes: Gauge::default(),
            cache_entries: Gauge::default(),
            commit_seconds: histogram(&COMMIT_SECONDS),
            commit_change_sets: histogram(&BATCH_SIZES),
            commit_conflicts: Counter::default(),
            syncs: Family::default(),
            sync_seconds: Family::new_with_constructor(sync_histogram),
            sync_groups: histogram(&SNAPSHOT_SIZES),
            sync_members: histogram(&SNAPSHOT_SIZES),
            event_waiters: Gauge::default(),
            pool_connections: Family::default(),
            webhook_deliveries: Family::default(),
            webhook_delivery_seconds: histogram(&REQUEST_SECONDS),
            webhook_lag_seconds: histogram(&LONG_SECONDS),
            webhook_backlog_events: Gauge::default(),
            webhook_subscriptions_behind: Gauge::default(),
            webhook_subscriptions_paused: Gauge::default(),
        };
        metrics.registered()
    }

    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "http_requests",
            "Requests answered, by method, route template, envelope code (none: an answer \
             without the envelope) and HTTP status",
            self.requests.clone(),
        );
        r.register_with_unit(
            "http_request_duration",
            "Time from a request's head to its answer, by method and route template",
            Unit::Seconds,
            self.request_seconds.clone(),
        );
        r.register(
            "connections_refused",
            "Connections refused at once because the server or the client's address held as \
             many as allowed",
            self.connections_refused.clone(),
        );
        r.register(
            "token_calls",
            "Token calls by outcome: issued, invalid_credential, rate_limited, refused",
            self.token_calls.clone(),
        );
        r.register(
            "rate_limit_refusals",
            "Calls refused by a rate limit: calls (per appid), token_calls (per appid), \
             token_failures (per client address)",
            self.limit_refusals.clone(),
        );
        r.register(
            "quota_refusals",
            "Writes refused by a quota: groups, members or orgs",
            self.quota_refusals.clone(),
        );
        r.register(
            "directory_cache_hits",
            "Reads answered from the in-memory copy of a directory",
            self.cache_hits.clone(),
        );
        r.register(
            "directory_cache_loads",
            "Directories loaded from the database (a miss: no copy, or an outdated one)",
            self.cache_loads.clone(),
        );
        r.register_with_unit(
            "directory_cache_load_duration",
            "Time to load a directory from the database",
            Unit::Seconds,
            self.cache_load_seconds.clone(),
        );
        r.register(
            "directory_cache_evictions",
            "Directory copies dropped to keep the cache within its memory budget",
            self.cache_evictions.clone(),
        );
        r.register_with_unit(
            "directory_cache",
            "Estimated memory held by the cached directory copies",
            Unit::Bytes,
            self.cache_bytes.clone(),
        );
        r.register(
            "directory_cache_entries",
            "Directories with a copy in memory",
            self.cache_entries.clone(),
        );
        r.register_with_unit(
            "write_commit_duration",
            "Time to commit one directory write to the database (successful commits)",
            Unit::Seconds,
            self.commit_seconds.clone(),
        );
        r.register(
            "write_commit_change_sets",
            "Change sets (one per write call) committed in one transaction",
            self.commit_change_sets.clone(),
        );
        r.register(
            "write_commit_conflicts",
            "Directory writes decided again after losing a race with another process or their batch",
            self.commit_conflicts.clone(),
        );
        r.register(
            "syncs",
            "Directory syncs by outcome: applied, dry_run, refused, in_progress, failed",
            self.syncs.clone(),
        );
        r.register_with_unit(
            "sync_duration",
            "Time a sync took once its snapshot was read, by outcome",
            Unit::Seconds,
            self.sync_seconds.clone(),
        );
        r.register(
            "sync_snapshot_groups",
            "Groups in each snapshot a sync was given",
            self.sync_groups.clone(),
        );
        r.register(
            "sync_snapshot_members",
            "Members in each snapshot a sync was given",
            self.sync_members.clone(),
        );
        r.register(
            "event_waiters",
            "Change-feed callers waiting for a commit",
            self.event_waiters.clone(),
        );
        r.register(
            "db_pool_connections",
            "Database connections open, by pool and state (in_use or idle)",
            self.pool_connections.clone(),
        );
        r.register(
            "webhook_deliveries",
            "Webhook batches posted, by outcome: acknowledged (a 2xx answer) or failed (to be \
             retried)",
            self.webhook_deliveries.clone(),
        );
        r.register_with_unit(
            "webhook_delivery_duration",
            "Time from posting a webhook batch to the receiver's answer (or the failure)",
            Unit::Seconds,
            self.webhook_delivery_seconds.clone(),
        );
        r.register_with_unit(
            "webhook_delivery_lag",
            "Time from the commit of a batch's first event to the receiver's acknowledgement \
             (whole seconds: event times are), including retries",
            Unit::Seconds,
            self.webhook_lag_seconds.clone(),
        );
        r.register(
            "webhook_backlog_events",
            "Events committed and not yet acknowledged by their webhook subscriptions, summed \
             over the subscriptions not paused, in every process",
            self.webhook_backlog_events.clone(),
        );
        r.register(
            "webhook_subscriptions_behind",
            "Webhook subscriptions not paused with events not yet acknowledged",
            self.webhook_subscriptions_behind.clone(),
        );
        r.register(
            "webhook_subscriptions_paused",
            "Webhook subscriptions paused (past their retry budget, or by their team)",
            self.webhook_subscriptions_paused.clone(),
        );
        self
    }

    /// The interned label of a route template.
    fn route(&self, template: Option<&str>) -> Route {
        let Some(template) = template else {
            return self.unmatched.clone();
        };
        let known = self.routes.read().unwrap_or_else(|p| p.into_inner());
        if let Some(route) = known.get(template) {
            return route.clone();
        }
        drop(known);
        self.routes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(template.into())
            .or_insert_with(|| Route(Arc::from(template)))
            .clone()
    }

    /// Count an answered request and its latency.
    pub fn request(&self, answered: Answered<'_>) {
        let method = method_label(answered.method);
        let route = self.route(answered.route);
        self.request_seconds
            .get_or_create(&RouteLabels {
                method,
                route: route.clone(),
            })
            .observe(answered.elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route,
                code: answered.code.unwrap_or("none"),
                status: answered.status,
            })
            .inc();
    }

    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    pub fn token_call(&self, outcome: TokenOutcome) {
        let outcome = match outcome {
            TokenOutcome::Issued => "issued",
            TokenOutcome::InvalidCredential => "invalid_credential",
            TokenOutcome::RateLimited => "rate_limited",
            TokenOutcome::Refused => "refused",
        };
        self.token_calls
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn limit_refusal(&self, limit: Limit) {
        let limit = match limit {
            Limit::Calls => "calls",
            Limit::TokenCalls => "token_calls",
            Limit::TokenFailures => "token_failures",
        };
        self.limit_refusals
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// A write refused by the quota named `quota` (`groups`, `members`, `orgs`).
    pub fn quota_refusal(&self, quota: &'static str) {
        self.quota_refusals
            .get_or_create(&QuotaLabels { quota })
            .inc();
    }

    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    pub fn cache_load(&self, took: Duration) {
        self.cache_loads.inc();
        self.cache_load_seconds.observe(took.as_secs_f64());
    }

    pub fn cache_evictions(&self, evicted: u64) {
        self.cache_evictions.inc_by(evicted);
    }

    /// One committed transaction holding `change_sets` write calls' changes.
    pub fn commit(&self, took: Duration, change_sets: usize) {
        self.commit_seconds.observe(took.as_secs_f64());
        self.commit_change_sets.observe(change_sets as f64);
    }

    pub fn commit_conflict(&self) {
        self.commit_conflicts.inc();
    }

    /// A posted webhook batch: how long the receiver took, and on acknowledgement how long
    /// after its first event's commit.
    pub fn webhook_delivery(&self, took: Duration, acknowledged: Option<Duration>) {
        let outcome = if acknowledged.is_some() {
            "acknowledged"
        } else {
            "failed"
        };
        self.webhook_deliveries
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.webhook_delivery_seconds.observe(took.as_secs_f64());
        if let Some(lag) = acknowledged {
            self.webhook_lag_seconds.observe(lag.as_secs_f64());
        }
    }

    /// A sync that ended as `end`; `ran` is its duration and snapshot size (groups, members)
    /// when it got as far as its snapshot.
    pub fn sync(&self, end: SyncEnd, ran: Option<(Duration, usize, usize)>) {
        let outcome = end.label();
        self.syncs.get_or_create(&OutcomeLabels { outcome }).inc();
        if let Some((took, groups, members)) = ran {
            self.sync_seconds
                .get_or_create(&OutcomeLabels { outcome })
                .observe(took.as_secs_f64());
            self.sync_groups.observe(groups as f64);
            self.sync_members.observe(members as f64);
        }
    }

    /// Every metric in the Prometheus text format, with the sampled values of `sample`.
    pub fn render(&self, sample: &Sample) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.cache_bytes.set(gauge(sample.cache_bytes));
        self.cache_entries.set(gauge(sample.cache_entries));
        self.event_waiters.set(gauge(sample.event_waiters));
        if let Some(webhooks) = sample.webhooks {
            self.webhook_backlog_events.set(webhooks.events);
            self.webhook_subscriptions_behind.set(webhooks.behind);
            self.webhook_subscriptions_paused.set(webhooks.paused);
        }
        for pool in &sample.pools {
            let idle = gauge(pool.idle);
            let open = i64::from(pool.open);
            for (state, value) in [("in_use", (open - idle).max(0)), ("idle", idle)] {
                self.pool_connections
                    .get_or_create(&PoolLabels {
                        pool: pool.pool,
                        state,
                    })
                    .set(value);
            }
        }
        let mut text = String::with_capacity(16 * 1024);
        if prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry).is_err()
        {
            // Writing to a String cannot fail; an encoder error would be a bug of a label.
            text.clear();
            let _ = writeln!(text, "# the metrics could not be encoded");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_counts_under_its_route_template_and_an_unknown_method_as_other() {
        let metrics = Metrics::new();
        let method = axum::http::Method::from_bytes(b"BREW").expect("method");
        for route in [Some("/api/teams/{team_id}/groups"), None] {
            metrics.request(Answered {
                method: &method,
                route,
                code: Some("OK"),
                status: 200,
                elapsed: Duration::from_micros(300),
            });
        }
        let text = metrics.render(&Sample::default());
        assert!(text.contains(
            "contactsd_http_requests_total{method=\"other\",route=\"/api/teams/{team_id}/groups\",code=\"OK\",status=\"200\"} 1"
        ), "{text}");
        assert!(text.contains("route=\"unmatched\""), "{text}");
        assert!(text.contains("# TYPE contactsd_http_request_duration_seconds histogram"));
    }

    #[test]
    fn pool_use_is_split_into_in_use_and_idle() {
        let metrics = Metrics::new();
        let sample = Sample {
            pools: vec![PoolUse {
                pool: "reads",
                open: 5,
                idle: 2,
            }],
            ..Sample::default()
        };
        let text = metrics.render(&sample);
        assert!(text.contains("contactsd_db_pool_connections{pool=\"reads\",state=\"in_use\"} 3"));
        assert!(text.contains("contactsd_db_pool_connections{pool=\"reads\",state=\"idle\"} 2"));
    }
}
