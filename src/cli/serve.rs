//! `contactsd serve`: its settings, the first-run bootstrap, and the server until a signal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::FixedOffset;
use clap::Args;
use tokio::net::TcpListener;

use crate::domain::access::Plan;
use crate::domain::values::OrgName;
use crate::http::{self, ConnectionSettings, HttpSettings, HttpStatus};
use crate::metrics::Metrics;
use crate::service::{
    DEFAULT_CACHE_MEMORY_MB, EventSettings, QuotaSettings, Service, ServiceSettings,
    WebhookSettings,
};
use crate::snapshot::{MOST_BYTES, SnapshotLimits};

#[derive(Debug, Args)]
pub(super) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CONTACTSD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Token lifetime in seconds.
    #[arg(
        long,
        env = "CONTACTSD_TOKEN_TTL",
        default_value_t = 7200,
        value_parser = clap::value_parser!(u64).range(1..=31_536_000),
    )]
    token_ttl: u64,
    /// Calls per second per appid (0 = no limit).
    #[arg(long, env = "CONTACTSD_RATE_LIMIT", default_value_t = 20)]
    rate_limit: u32,
    /// Token calls per minute per appid (0 = no limit).
    #[arg(long, env = "CONTACTSD_TOKEN_RATE_LIMIT", default_value_t = 60)]
    token_rate_limit: u32,
    /// Failed token calls (unknown appid or wrong secret) per minute per client address (0 =
    /// no limit); an address past it is refused for a while whatever it sends.
    #[arg(long, env = "CONTACTSD_TOKEN_FAILURE_LIMIT", default_value_t = 60)]
    token_failure_limit: u32,
    /// Maximum depth of the group tree (a top-level group has depth 1).
    #[arg(
        long,
        env = "CONTACTSD_MAX_GROUP_DEPTH",
        default_value_t = 15,
        value_parser = clap::value_parser!(u32).range(1..=64),
    )]
    max_group_depth: u32,
    /// UTC offset of the times the API returns, e.g. `+08:00`.
    #[arg(
        long,
        env = "CONTACTSD_TIME_OFFSET",
        default_value = "+08:00",
        value_parser = parse_offset,
    )]
    time_offset: FixedOffset,
    /// Largest snapshot the sync route accepts, in bytes after decompression (448 MiB: the
    /// contract's largest directory in compact JSON; see docs/SYNC.md), at most 4 GiB.
    #[arg(
        long,
        env = "CONTACTSD_SYNC_BODY_LIMIT",
        default_value_t = SnapshotLimits::DEFAULT_MAX_BYTES,
        value_parser = clap::value_parser!(u64).range(1..=MOST_BYTES),
    )]
    sync_body_limit: u64,
    /// Most groups one snapshot may hold.
    #[arg(
        long,
        env = "CONTACTSD_SYNC_MAX_GROUPS",
        default_value_t = SnapshotLimits::DEFAULT_MAX_GROUPS,
    )]
    sync_max_groups: usize,
    /// Most members one snapshot may hold.
    #[arg(
        long,
        env = "CONTACTSD_SYNC_MAX_MEMBERS",
        default_value_t = SnapshotLimits::DEFAULT_MAX_MEMBERS,
    )]
    sync_max_members: usize,
    /// Seconds a sync body may take to arrive, from its first byte to its last.
    #[arg(
        long,
        env = "CONTACTSD_SYNC_BODY_TIMEOUT",
        default_value_t = 300,
        value_parser = clap::value_parser!(u64).range(1..=86_400),
    )]
    sync_body_timeout: u64,
    /// Syncs in flight in the process; one more is refused with `sync_in_progress`.
    #[arg(
        long,
        env = "CONTACTSD_MAX_SYNCS",
        default_value_t = 2,
        value_parser = clap::value_parser!(u64).range(1..=1024),
    )]
    max_syncs: u64,
    /// Syncs in flight per team; one more is refused with `sync_in_progress`.
    #[arg(
        long,
        env = "CONTACTSD_MAX_SYNCS_PER_TEAM",
        default_value_t = 1,
        value_parser = clap::value_parser!(u64).range(1..=1024),
    )]
    max_syncs_per_team: u64,
    /// HTTP status of answers: `200` (every answer that carries the envelope is HTTP 200 and
    /// its `code` tells success from failure, as the reference service's clients expect) or
    /// `mapped` (400, 401, 403, 404, 409, 429, 500, ... by `code` and `error.type`).
    #[arg(long, env = "CONTACTSD_HTTP_STATUS", default_value = "200")]
    http_status: HttpStatus,
    /// Milliseconds a token's or a team's record, or a listed member's name, is trusted before
    /// the database is asked again (0 = ask on every call). Changes made through this process
    /// are seen at once; changes made by another process (a second server, the command line)
    /// within this time.
    #[arg(
        long,
        env = "CONTACTSD_READ_CACHE_MS",
        default_value_t = 1000,
        value_parser = clap::value_parser!(u64).range(0..=60_000),
    )]
    read_cache_ms: u64,
    /// Memory, in MiB, that the in-memory copies of directories may hold together (estimated);
    /// past it the least recently used are dropped and loaded again when next used.
    #[arg(
        long,
        env = "CONTACTSD_CACHE_MEMORY_MB",
        default_value_t = DEFAULT_CACHE_MEMORY_MB as u64,
        value_parser = clap::value_parser!(u64).range(1..=1 << 24),
    )]
    cache_memory_mb: u64,
    /// Valid groups a directory may hold, unless `admin set-quota` says otherwise for its org.
    #[arg(
        long,
        env = "CONTACTSD_MAX_GROUPS_PER_TEAM",
        default_value_t = QuotaSettings::default().max_groups,
        value_parser = clap::value_parser!(i64).range(0..),
    )]
    max_groups_per_team: i64,
    /// Members a directory may hold, unless `admin set-quota` says otherwise for its org.
    #[arg(
        long,
        env = "CONTACTSD_MAX_MEMBERS_PER_TEAM",
        default_value_t = QuotaSettings::default().max_members,
        value_parser = clap::value_parser!(i64).range(0..),
    )]
    max_members_per_team: i64,
    /// Orgs a platform app may create, unless `admin set-quota` says otherwise for the app.
    #[arg(
        long,
        env = "CONTACTSD_MAX_ORGS_PER_APP",
        default_value_t = QuotaSettings::default().max_orgs_per_app,
        value_parser = clap::value_parser!(i64).range(0..),
    )]
    max_orgs_per_app: i64,
    /// Connections served at once; a connection beyond this is answered with
    /// `request_rate_limited`.
    #[arg(
        long,
        env = "CONTACTSD_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    max_connections: u32,
    /// Connections served at once for one client address (IPv6: one /64); more are answered
    /// with HTTP 429. Behind a proxy every client has the proxy's address: raise it to
    /// `--max-connections` there.
    #[arg(
        long,
        env = "CONTACTSD_MAX_CONNECTIONS_PER_ADDRESS",
        default_value_t = 128,
        value_parser = clap::value_parser!(u32).range(1..),
    )]
    max_connections_per_address: u32,
    /// Seconds a client has to send a request's headers (also the idle keep-alive limit).
    #[arg(
        long,
        env = "CONTACTSD_HEADER_READ_TIMEOUT",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=3600),
    )]
    header_read_timeout: u64,
    /// Longest pause, in seconds, between two chunks of a request body.
    #[arg(
        long,
        env = "CONTACTSD_BODY_READ_TIMEOUT",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600),
    )]
    body_read_timeout: u64,
    /// Days the change feed keeps events; older ones are removed and a cursor before them
    /// answers `events_expired`.
    #[arg(
        long,
        env = "CONTACTSD_EVENT_RETENTION_DAYS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=36_500),
    )]
    event_retention_days: u64,
    /// Record metrics and serve them at `GET /metrics` (`on`), or record nothing (`off`).
    #[arg(long, env = "CONTACTSD_METRICS", value_enum, default_value = "on")]
    metrics: Switch,
    /// Serve `GET /metrics` on this address (a private one, say) instead of on `--listen`.
    #[arg(long, env = "CONTACTSD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Allow webhook URLs on loopback, private, link-local and metadata addresses (refused by
    /// default, at subscription and at every delivery).
    #[arg(
        long,
        env = "CONTACTSD_WEBHOOK_ALLOW_PRIVATE",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false,
        num_args = 0..=1,
        default_missing_value = "true",
    )]
    webhook_allow_private: bool,
    /// Webhook subscriptions one team may hold.
    #[arg(
        long,
        env = "CONTACTSD_WEBHOOK_MAX_PER_TEAM",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(0..=1000),
    )]
    webhook_max_per_team: u64,
    /// Seconds a webhook receiver has to answer a delivery.
    #[arg(
        long,
        env = "CONTACTSD_WEBHOOK_TIMEOUT",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..=60),
    )]
    webhook_timeout: u64,
    /// Seconds a failing webhook is retried (with back-off) before it is paused.
    #[arg(
        long,
        env = "CONTACTSD_WEBHOOK_RETRY_SECONDS",
        default_value_t = 86_400,
        value_parser = clap::value_parser!(u64).range(1..=30 * 86_400),
    )]
    webhook_retry_seconds: u64,
    /// Webhook deliveries in flight in the process.
    #[arg(
        long,
        env = "CONTACTSD_WEBHOOK_WORKERS",
        default_value_t = 16,
        value_parser = clap::value_parser!(u64).range(1..=1024),
    )]
    webhook_workers: u64,
}

/// A setting that is on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(super) enum Switch {
    On,
    Off,
}

impl ServeArgs {
    /// The process's metrics, unless they are off.
    pub(super) fn metrics(&self) -> Option<Arc<Metrics>> {
        (self.metrics == Switch::On).then(|| Arc::new(Metrics::new()))
    }

    /// The service's settings from these flags.
    pub(super) fn service_settings(&self) -> ServiceSettings {
        ServiceSettings {
            token_ttl: self.token_ttl,
            rate_limit: self.rate_limit,
            token_rate_limit: self.token_rate_limit,
            token_failure_limit: self.token_failure_limit,
            max_group_depth: self.max_group_depth,
            read_cache_ttl: Duration::from_millis(self.read_cache_ms),
            max_syncs: self.max_syncs as usize,
            max_syncs_per_team: self.max_syncs_per_team as usize,
            cache_memory: usize::try_from(self.cache_memory_mb << 20).unwrap_or(usize::MAX),
            quotas: QuotaSettings {
                max_groups: self.max_groups_per_team,
                max_members: self.max_members_per_team,
                max_orgs_per_app: self.max_orgs_per_app,
            },
            events: EventSettings {
                retention: Duration::from_secs(self.event_retention_days * 86_400),
                ..EventSettings::default()
            },
            webhooks: WebhookSettings {
                allow_private: self.webhook_allow_private,
                max_per_team: self.webhook_max_per_team as usize,
                timeout: Duration::from_secs(self.webhook_timeout),
                retry_budget: Duration::from_secs(self.webhook_retry_seconds),
                workers: self.webhook_workers as usize,
                workers_per_team: (self.webhook_workers as usize / 4).clamp(1, 4),
                ..WebhookSettings::default()
            },
            ..ServiceSettings::default()
        }
    }
}

/// On a database without any app, create a platform app and a demo org and show how to use
/// them: the first run is usable at once.
async fn bootstrap(service: &Service, listen: SocketAddr) -> Result<()> {
    if !service
        .is_empty()
        .await
        .context("cannot read the database")?
    {
        return Ok(());
    }
    let platform = service
        .create_platform_app("platform")
        .await
        .context("cannot create the first platform app")?;
    let (demo, app) = service
        .create_org_with_app(&OrgName::parse("Demo")?, Plan::Business, 10)
        .await
        .context("cannot create the demo org")?;
    println!(
        "First start: created credentials. They are shown only this once.\n\
         \n  platform app   appid={}  secret={}\n  \
         demo org       org_id={} team_id={} (plan business)\n  \
         demo team app  appid={}  secret={}\n\n\
         Get a token for the demo team app:\n\n  \
         curl 'http://{listen}/api/oauth2/access_token?appid={}&secret={}&grant_type=client_credential'\n",
        platform.appid,
        platform.secret,
        demo.org_id,
        demo.team_id,
        app.appid,
        app.secret,
        app.appid,
        app.secret,
    );
    Ok(())
}

pub(super) async fn serve(service: Arc<Service>, args: &ServeArgs) -> Result<()> {
    bootstrap(&service, args.listen).await?;
    tokio::spawn({
        let service = service.clone();
        async move { service.prune_events_forever().await }
    });
    let worker =
        http::webhook_worker(service.clone(), args.time_offset).map_err(anyhow::Error::msg)?;
    tokio::spawn(worker.run());
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let metrics_listener = match args.metrics_listen {
        Some(address) if service.metrics().is_some() => Some((
            address,
            TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen on {address} for the metrics"))?,
        )),
        Some(address) => {
            tracing::warn!(listen = %address, "metrics are off: --metrics-listen is ignored");
            None
        }
        None => None,
    };
    let metrics = service.metrics().cloned();
    let router = http::router(
        service.clone(),
        HttpSettings {
            time_offset: args.time_offset,
            http_status: args.http_status,
            sync_limits: SnapshotLimits {
                max_bytes: args.sync_body_limit,
                max_groups: args.sync_max_groups,
                max_members: args.sync_max_members,
            },
            sync_body_timeout: Duration::from_secs(args.sync_body_timeout),
            metrics_route: metrics_listener.is_none(),
            ..HttpSettings::default()
        },
    );
    let connections = ConnectionSettings {
        max_connections: args.max_connections as usize,
        http_status: args.http_status,
        max_connections_per_address: args.max_connections_per_address as usize,
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        body_read_timeout: Duration::from_secs(args.body_read_timeout),
        metrics,
        ..ConnectionSettings::default()
    };
    if let Some((address, listener)) = metrics_listener {
        // Ends with the process: the API's shutdown is what stops the server.
        let router = http::metrics_router(&service, args.http_status);
        let settings = ConnectionSettings {
            metrics: None,
            ..connections.clone()
        };
        tokio::spawn(http::serve(
            listener,
            router,
            settings,
            std::future::pending(),
        ));
        tracing::info!(listen = %address, "metrics are served on their own address");
    }
    tracing::info!(listen = %args.listen, "contactsd is serving");
    http::serve(listener, router, connections, shutdown_signal()).await;
    tracing::info!("contactsd stopped");
    Ok(())
}

/// Resolves on SIGINT or SIGTERM; requests in flight are then finished.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}

fn parse_offset(raw: &str) -> std::result::Result<FixedOffset, String> {
    raw.parse::<FixedOffset>()
        .map_err(|_| format!("{raw:?} is not a UTC offset like +08:00"))
}
