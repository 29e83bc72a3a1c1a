//! The `contactsd` command line: settings, `serve`, and the operator's `admin` commands.
//!
//! Every setting is a flag and an environment variable (a flag wins), as listed in the
//! contract's §10. Commands other than `serve` print one JSON object on stdout on success, and
//! a message on stderr (the error with its causes) with a non-zero exit on failure.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use chrono::FixedOffset;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::net::TcpListener;

use crate::domain::access::Plan;
use crate::domain::sync::{Snapshot, SyncMode, SyncOptions, SyncRefusal};
use crate::domain::values;
use crate::http::{self, ConnectionSettings, HttpSettings, HttpStatus};
use crate::service::{
    DEFAULT_CACHE_MEMORY_MB, QuotaSettings, Service, ServiceError, ServiceSettings,
};
use crate::snapshot::{self, Format, SnapshotLimits};
use crate::store;
use crate::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "contactsd",
    version,
    about = "A self-hosted organization contacts directory"
)]
struct Cli {
    /// Database URL: `sqlite://FILE` (created if missing) or `postgres://...`.
    #[arg(
        long,
        env = "CONTACTSD_DATABASE_URL",
        default_value = "sqlite://contactsd.db",
        global = true
    )]
    db: String,

    /// Most connections this process opens to PostgreSQL (processes × this must stay below the
    /// server's `max_connections`); SQLite ignores it.
    #[arg(long, env = "CONTACTSD_DB_POOL_SIZE", default_value_t = store::StoreSettings::default().pool_size, value_parser = clap::value_parser!(u32).range(1..), global = true)]
    db_pool_size: u32,

    /// Log format: `text` for people, `json` for machines.
    #[arg(
        long,
        env = "CONTACTSD_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Migrate the database if needed, then serve the API until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Operator commands that act on the database directly.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Make a directory equal to a snapshot file (JSON, NDJSON or CSV), on the database given
    /// by `--db`, on behalf of the team's own app (its openids). Prints the report.
    Sync(SyncArgs),
}

#[derive(Debug, Args)]
struct SyncArgs {
    #[arg(long)]
    team_id: i64,
    /// `.json`, `.ndjson`/`.jsonl` or `.csv` (see docs/SYNC.md for the columns); `.gz` after
    /// any of them for a gzip-compressed file.
    #[arg(long)]
    file: std::path::PathBuf,
    #[arg(long, value_enum, default_value = "upsert")]
    mode: ModeArg,
    /// Report what would change, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Lift the brake on mass deletion in replace mode.
    #[arg(long)]
    allow_mass_delete: bool,
    /// Maximum depth of the group tree.
    #[arg(long, env = "CONTACTSD_MAX_GROUP_DEPTH", default_value_t = 15)]
    max_group_depth: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Upsert,
    Replace,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CONTACTSD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Token lifetime in seconds.
    #[arg(long, env = "CONTACTSD_TOKEN_TTL", default_value_t = 7200, value_parser = clap::value_parser!(u64).range(1..=31_536_000))]
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
    #[arg(long, env = "CONTACTSD_MAX_GROUP_DEPTH", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=64))]
    max_group_depth: u32,
    /// UTC offset of the times the API returns, e.g. `+08:00`.
    #[arg(long, env = "CONTACTSD_TIME_OFFSET", default_value = "+08:00", value_parser = parse_offset)]
    time_offset: FixedOffset,
    /// Largest snapshot the sync route accepts, in bytes after decompression (448 MiB: the
    /// contract's largest directory in compact JSON; see docs/SYNC.md).
    #[arg(long, env = "CONTACTSD_SYNC_BODY_LIMIT", default_value_t = SnapshotLimits::DEFAULT_MAX_BYTES, value_parser = clap::value_parser!(u64).range(1..))]
    sync_body_limit: u64,
    /// Most groups one snapshot may hold.
    #[arg(long, env = "CONTACTSD_SYNC_MAX_GROUPS", default_value_t = SnapshotLimits::DEFAULT_MAX_GROUPS)]
    sync_max_groups: usize,
    /// Most members one snapshot may hold.
    #[arg(long, env = "CONTACTSD_SYNC_MAX_MEMBERS", default_value_t = SnapshotLimits::DEFAULT_MAX_MEMBERS)]
    sync_max_members: usize,
    /// Seconds a sync body may take to arrive, from its first byte to its last.
    #[arg(long, env = "CONTACTSD_SYNC_BODY_TIMEOUT", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    sync_body_timeout: u64,
    /// Syncs in flight in the process; one more is refused with `sync_in_progress`.
    #[arg(long, env = "CONTACTSD_MAX_SYNCS", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=1024))]
    max_syncs: u64,
    /// Syncs in flight per team; one more is refused with `sync_in_progress`.
    #[arg(long, env = "CONTACTSD_MAX_SYNCS_PER_TEAM", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
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
    #[arg(long, env = "CONTACTSD_READ_CACHE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    read_cache_ms: u64,
    /// Memory, in MiB, that the in-memory copies of directories may hold together (estimated);
    /// past it the least recently used are dropped and loaded again when next used.
    #[arg(long, env = "CONTACTSD_CACHE_MEMORY_MB", default_value_t = DEFAULT_CACHE_MEMORY_MB as u64, value_parser = clap::value_parser!(u64).range(1..=1 << 24))]
    cache_memory_mb: u64,
    /// Valid groups a directory may hold, unless `admin set-quota` says otherwise for its org.
    #[arg(long, env = "CONTACTSD_MAX_GROUPS_PER_TEAM", default_value_t = QuotaSettings::default().max_groups, value_parser = clap::value_parser!(i64).range(0..))]
    max_groups_per_team: i64,
    /// Members a directory may hold, unless `admin set-quota` says otherwise for its org.
    #[arg(long, env = "CONTACTSD_MAX_MEMBERS_PER_TEAM", default_value_t = QuotaSettings::default().max_members, value_parser = clap::value_parser!(i64).range(0..))]
    max_members_per_team: i64,
    /// Orgs a platform app may create, unless `admin set-quota` says otherwise for the app.
    #[arg(long, env = "CONTACTSD_MAX_ORGS_PER_APP", default_value_t = QuotaSettings::default().max_orgs_per_app, value_parser = clap::value_parser!(i64).range(0..))]
    max_orgs_per_app: i64,
    /// Connections served at once; a connection beyond this is answered with `request_rate_limited`.
    #[arg(long, env = "CONTACTSD_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Connections served at once for one client address (IPv6: one /64); more are answered
    /// with HTTP 429. Behind a proxy every client has the proxy's address: raise it to
    /// `--max-connections` there.
    #[arg(long, env = "CONTACTSD_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections_per_address: u32,
    /// Seconds a client has to send a request's headers (also the idle keep-alive limit).
    #[arg(long, env = "CONTACTSD_HEADER_READ_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_read_timeout: u64,
    /// Longest pause, in seconds, between two chunks of a request body.
    #[arg(long, env = "CONTACTSD_BODY_READ_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_read_timeout: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PlanArg {
    Free,
    Business,
    Flagship,
}

impl From<PlanArg> for Plan {
    fn from(plan: PlanArg) -> Plan {
        match plan {
            PlanArg::Free => Plan::Free,
            PlanArg::Business => Plan::Business,
            PlanArg::Flagship => Plan::Flagship,
        }
    }
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Create an org, its contacts directory and a team app for it.
    CreateOrg {
        #[arg(long)]
        name: String,
        #[arg(long, value_enum, default_value = "business")]
        plan: PlanArg,
        /// Admin seats (members with role 2 or 3) the org may fill.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(i64).range(0..=1_000_000))]
        admin_seats: i64,
    },
    /// Create a platform app, which may create orgs through the API.
    CreatePlatformApp {
        #[arg(long)]
        name: String,
    },
    /// Give an app a new secret; the old secret and the app's current token stop working.
    RotateSecret {
        #[arg(long)]
        appid: String,
    },
    /// Change one org's quotas (`--org-id` with `--max-groups` and/or `--max-members`) or how
    /// many orgs one platform app may create (`--appid` with `--max-orgs`); what is not given
    /// keeps its stored value or the server's default.
    SetQuota {
        #[arg(long, conflicts_with = "appid", required_unless_present = "appid")]
        org_id: Option<i64>,
        #[arg(long, requires = "org_id", value_parser = clap::value_parser!(i64).range(0..))]
        max_groups: Option<i64>,
        #[arg(long, requires = "org_id", value_parser = clap::value_parser!(i64).range(0..))]
        max_members: Option<i64>,
        #[arg(long, requires = "max_orgs")]
        appid: Option<String>,
        #[arg(long, requires = "appid", value_parser = clap::value_parser!(i64).range(0..))]
        max_orgs: Option<i64>,
    },
    /// SCIM provisioning tokens of a directory (§12).
    ScimToken {
        #[command(subcommand)]
        command: ScimTokenCommand,
    },
    /// Check every invariant of every stored directory; exits non-zero on any violation.
    Check {
        /// Maximum depth of the group tree.
        #[arg(long, env = "CONTACTSD_MAX_GROUP_DEPTH", default_value_t = 15)]
        max_group_depth: u32,
    },
}

fn parse_offset(raw: &str) -> std::result::Result<FixedOffset, String> {
    raw.parse::<FixedOffset>()
        .map_err(|_| format!("{raw:?} is not a UTC offset like +08:00"))
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_writer = telemetry::init_logging(cli.log_format);
    let outcome = tokio::runtime::Runtime::new()
        .context("cannot start the runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    // The last log lines first, then the verdict.
    drop(log_writer);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The whole chain of causes, outermost first.
            eprintln!("contactsd: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    let store_settings = store::StoreSettings {
        pool_size: cli.db_pool_size,
    };
    let store = store::open(&cli.db, &store_settings)
        .await
        .context("cannot open the database")?;
    match cli.command {
        Command::Serve(args) => {
            let settings = ServiceSettings {
                token_ttl: args.token_ttl,
                rate_limit: args.rate_limit,
                token_rate_limit: args.token_rate_limit,
                token_failure_limit: args.token_failure_limit,
                max_group_depth: args.max_group_depth,
                read_cache_ttl: Duration::from_millis(args.read_cache_ms),
                max_syncs: args.max_syncs as usize,
                max_syncs_per_team: args.max_syncs_per_team as usize,
                cache_memory: usize::try_from(args.cache_memory_mb << 20).unwrap_or(usize::MAX),
                quotas: QuotaSettings {
                    max_groups: args.max_groups_per_team,
                    max_members: args.max_members_per_team,
                    max_orgs_per_app: args.max_orgs_per_app,
                },
                ..ServiceSettings::default()
            };
            let service = Arc::new(Service::new(store, settings));
            serve(service, &args).await
        }
        Command::Admin { command } => {
            let max_group_depth = match command {
                AdminCommand::Check { max_group_depth } => max_group_depth,
                _ => ServiceSettings::default().max_group_depth,
            };
            let settings = ServiceSettings {
                max_group_depth,
                ..ServiceSettings::default()
            };
            let service = Service::new(store, settings);
            let output = admin(&service, command).await?;
            println!("{output}");
            Ok(())
        }
        Command::Sync(args) => {
            let settings = ServiceSettings {
                max_group_depth: args.max_group_depth,
                ..ServiceSettings::default()
            };
            let service = Service::new(store, settings);
            let output = sync_file(&service, &args).await?;
            println!("{output}");
            Ok(())
        }
    }
}

/// Read a snapshot file in the format its name says, showing the bytes read on a terminal.
/// The snapshot limits are the server's defaults, except the size (the file is the operator's).
fn read_snapshot(path: &std::path::Path) -> Result<Snapshot> {
    let (format, gzip) = Format::from_file_name(&path.to_string_lossy()).ok_or_else(|| {
        anyhow!(
            "{}: the file name must end in .json, .ndjson, .jsonl or .csv (optionally .gz)",
            path.display()
        )
    })?;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let progress = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr())
        .with_style(
            ProgressStyle::with_template(
                "reading   {bar:40} {binary_bytes}/{binary_total_bytes} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    let limits = SnapshotLimits {
        max_bytes: u64::MAX,
        ..SnapshotLimits::default()
    };
    // Options inside a file are ignored: on the command line, the flags decide.
    let parsed = snapshot::read(progress.wrap_read(file), format, gzip, &limits)
        .with_context(|| format!("cannot read {}", path.display()));
    progress.finish();
    Ok(parsed?.snapshot)
}

async fn sync_file(service: &Service, args: &SyncArgs) -> Result<serde_json::Value> {
    let path = args.file.clone();
    let snapshot = tokio::task::spawn_blocking(move || read_snapshot(&path))
        .await
        .context("reading the snapshot stopped")??;
    eprintln!(
        "contactsd: syncing {} groups and {} members into team {}{}",
        snapshot.groups.len(),
        snapshot.members.len(),
        args.team_id,
        if args.dry_run { " (dry run)" } else { "" }
    );
    let options = SyncOptions {
        mode: match args.mode {
            ModeArg::Upsert => SyncMode::Upsert,
            ModeArg::Replace => SyncMode::Replace,
        },
        allow_mass_delete: args.allow_mass_delete,
    };
    let progress = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        )
        .with_message("validating, planning and writing");
    progress.enable_steady_tick(Duration::from_millis(120));
    let outcome = service
        .sync_as_team_app(args.team_id, &snapshot, options, args.dry_run)
        .await;
    progress.finish_and_clear();
    match outcome {
        Ok(outcome) => {
            let mut report = serde_json::to_value(&outcome.report)?;
            report["dry_run"] = json!(outcome.dry_run);
            report["elapsed_ms"] = json!(outcome.elapsed_ms);
            Ok(report)
        }
        Err(ServiceError::SyncRefused(SyncRefusal::Problems(problems))) => {
            let listed = serde_json::to_string_pretty(&problems)?;
            bail!("the snapshot has problems; nothing was changed:\n{listed}")
        }
        Err(ServiceError::SyncRefused(SyncRefusal::TooManyDeletes { groups, members })) => {
            bail!(
                "the snapshot would delete {groups} groups and remove {members} members; \
                 nothing was changed (pass --allow-mass-delete to proceed)"
            )
        }
        Err(ServiceError::TeamNotFound) => bail!("no team {}", args.team_id),
        Err(ServiceError::InvalidCredential) => {
            bail!("team {} has no team app to sync for", args.team_id)
        }
        Err(other) => Err(other).context("the sync failed"),
    }
}

#[derive(Debug, Subcommand)]
enum ScimTokenCommand {
    /// A new bearer token for the directory (shown once).
    Create {
        #[arg(long)]
        team_id: i64,
    },
    /// The directory's tokens (ids and creation times, never the tokens).
    List {
        #[arg(long)]
        team_id: i64,
    },
    /// Revoke a token at once.
    Revoke {
        #[arg(long)]
        id: i64,
    },
}

async fn scim_token(service: &Service, command: ScimTokenCommand) -> Result<serde_json::Value> {
    let record = |t: crate::store::scim::ScimTokenRecord| json!({"id": t.id, "team_id": t.team_id, "created_at": t.created_at});
    match command {
        ScimTokenCommand::Create { team_id } => {
            let token = service
                .create_scim_token(team_id)
                .await
                .context("cannot create the token")?;
            Ok(json!({"id": token.id, "team_id": token.team_id, "token": token.token}))
        }
        ScimTokenCommand::List { team_id } => {
            let tokens = service
                .scim_tokens(team_id)
                .await
                .context("cannot list the tokens")?;
            Ok(json!({"list": tokens.into_iter().map(record).collect::<Vec<_>>()}))
        }
        ScimTokenCommand::Revoke { id } => match service.revoke_scim_token(id).await {
            Ok(Some(token)) => Ok(record(token)),
            Ok(None) => bail!("no SCIM token with id {id}"),
            Err(e) => Err(e).context("cannot revoke the token"),
        },
    }
}

async fn admin(service: &Service, command: AdminCommand) -> Result<serde_json::Value> {
    match command {
        AdminCommand::CreateOrg {
            name,
            plan,
            admin_seats,
        } => {
            let name = values::org_name(&name)?;
            let (org, app) = service
                .create_org_with_app(&name, plan.into(), admin_seats)
                .await
                .context("cannot create the org")?;
            Ok(json!({
                "org_id": org.org_id,
                "team_id": org.team_id,
                "appid": app.appid,
                "secret": app.secret,
            }))
        }
        AdminCommand::CreatePlatformApp { name } => {
            let name = values::org_name(&name)?;
            let app = service
                .create_platform_app(&name)
                .await
                .context("cannot create the platform app")?;
            Ok(json!({"appid": app.appid, "secret": app.secret}))
        }
        AdminCommand::RotateSecret { appid } => {
            let app = match service.rotate_secret(&appid).await {
                Err(ServiceError::InvalidCredential) => bail!("no app with appid {appid:?}"),
                other => other.context("cannot rotate the secret")?,
            };
            Ok(json!({"appid": app.appid, "secret": app.secret}))
        }
        AdminCommand::SetQuota {
            org_id,
            max_groups,
            max_members,
            appid,
            max_orgs,
        } => match (org_id, appid, max_orgs) {
            (Some(org_id), _, _) => {
                let quota = match service.set_org_quota(org_id, max_groups, max_members).await {
                    Err(ServiceError::OrgNotFound) => bail!("no org {org_id}"),
                    other => other.context("cannot set the quota")?,
                };
                // null: the server's default (its --max-groups-per-team, --max-members-per-team).
                Ok(json!({
                    "org_id": org_id,
                    "max_groups": quota.max_groups,
                    "max_members": quota.max_members,
                }))
            }
            (None, Some(appid), Some(max_orgs)) => {
                match service.set_app_org_quota(&appid, max_orgs).await {
                    Err(ServiceError::InvalidCredential) => {
                        bail!("no platform app with appid {appid:?}")
                    }
                    other => other.context("cannot set the quota")?,
                }
                Ok(json!({"appid": appid, "max_orgs": max_orgs}))
            }
            _ => bail!("give --org-id, or --appid with --max-orgs"),
        },
        AdminCommand::ScimToken { command } => scim_token(service, command).await,
        AdminCommand::Check { .. } => {
            let checks = service
                .check_directories()
                .await
                .context("cannot check the directories")?;
            let broken: Vec<_> = checks
                .iter()
                .filter(|check| !check.violations.is_empty())
                .map(|check| json!({"team_id": check.team_id, "violations": check.violations}))
                .collect();
            let dangling = service
                .check_references()
                .await
                .context("cannot check the stored references")?;
            let report = json!({
                "teams_checked": checks.len(),
                "groups": checks.iter().map(|c| c.groups).sum::<usize>(),
                "members": checks.iter().map(|c| c.members).sum::<usize>(),
                "violations": broken,
                "dangling_references": dangling,
            });
            if broken.is_empty() && dangling.is_empty() {
                Ok(report)
            } else {
                bail!("invariants are violated:\n{report:#}")
            }
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
        .create_org_with_app("Demo", Plan::Business, 10)
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

async fn serve(service: Arc<Service>, args: &ServeArgs) -> Result<()> {
    bootstrap(&service, args.listen).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let router = http::router(
        service,
        HttpSettings {
            time_offset: args.time_offset,
            http_status: args.http_status,
            sync_limits: SnapshotLimits {
                max_bytes: args.sync_body_limit,
                max_groups: args.sync_max_groups,
                max_members: args.sync_max_members,
            },
            sync_body_timeout: Duration::from_secs(args.sync_body_timeout),
            ..HttpSettings::default()
        },
    );
    let connections = ConnectionSettings {
        max_connections: args.max_connections as usize,
        http_status: args.http_status,
        max_connections_per_address: args.max_connections_per_address as usize,
        header_read_timeout: Duration::from_secs(args.header_read_timeout),
        body_read_timeout: Duration::from_secs(args.body_read_timeout),
        ..ConnectionSettings::default()
    };
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
