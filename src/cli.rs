//! The `contactsd` command line: settings, `serve`, and the operator's `admin` commands.
//!
//! Every setting is a flag and an environment variable (a flag wins), as listed in the
//! contract's §10. Commands other than `serve` print one JSON object on stdout on success, and
//! a message on stderr with a non-zero exit on failure.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::FixedOffset;
use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use tokio::net::TcpListener;

use crate::domain::access::Plan;
use crate::domain::sync::{
    Snapshot, SnapshotGroup, SnapshotMember, SyncMode, SyncOptions, SyncRefusal,
};
use crate::domain::values::{self, Role};
use crate::http::{self, ConnectionSettings, HttpSettings};
use crate::service::{Service, ServiceError, ServiceSettings};
use crate::store;

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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
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
    /// Maximum depth of the group tree (a top-level group has depth 1).
    #[arg(long, env = "CONTACTSD_MAX_GROUP_DEPTH", default_value_t = 15, value_parser = clap::value_parser!(u32).range(1..=64))]
    max_group_depth: u32,
    /// UTC offset of the times the API returns, e.g. `+08:00`.
    #[arg(long, env = "CONTACTSD_TIME_OFFSET", default_value = "+08:00", value_parser = parse_offset)]
    time_offset: FixedOffset,
    /// Largest snapshot the sync route accepts, in bytes after decompression.
    #[arg(long, env = "CONTACTSD_SYNC_BODY_LIMIT", default_value_t = 512 * 1024 * 1024)]
    sync_body_limit: usize,
    /// Milliseconds a token's or a team's record, or a listed member's name, is trusted before
    /// the database is asked again (0 = ask on every call). Changes made through this process
    /// are seen at once; changes made by another process (a second server, the command line)
    /// within this time.
    #[arg(long, env = "CONTACTSD_READ_CACHE_MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    read_cache_ms: u64,
    /// Connections served at once; a connection beyond this is answered with HTTP 429.
    #[arg(long, env = "CONTACTSD_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
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

fn parse_offset(raw: &str) -> Result<FixedOffset, String> {
    raw.parse::<FixedOffset>()
        .map_err(|_| format!("{raw:?} is not a UTC offset like +08:00"))
}

/// The log's clock: UTC to the microsecond, as tracing-subscriber's default clock writes it
/// (`2026-12-02T04:45:30.874097Z`), but with the date and time of day formatted once a second
/// per thread rather than for every line (it was a quarter of a request line's cost).
struct LogClock;

impl tracing_subscriber::fmt::time::FormatTime for LogClock {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        thread_local! {
            static SECOND: std::cell::RefCell<(i64, String)> =
                const { std::cell::RefCell::new((i64::MIN, String::new())) };
        }
        let now = chrono::Utc::now();
        let second = now.timestamp();
        let mut micros = [b'0'; 6];
        let mut rest = now.timestamp_subsec_micros() % 1_000_000;
        for digit in micros.iter_mut().rev() {
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        SECOND.with_borrow_mut(|(cached, text)| {
            if *cached != second {
                *cached = second;
                *text = now.format("%Y-%m-%dT%H:%M:%S").to_string();
            }
            w.write_str(text)?;
            w.write_char('.')?;
            w.write_str(std::str::from_utf8(&micros).unwrap_or("000000"))?;
            w.write_char('Z')
        })
    }
}

/// Log lines are formatted where they happen and written by a thread of their own, in batches:
/// one `write` per batch rather than per line took the request log from a quarter of a page-1
/// listing's cost to a few percent (docs/BENCHMARKS.md). Lines are never dropped (a full queue
/// makes the logging thread wait); the returned guard writes what is left when it is dropped.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONTACTSD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::BufWriter::new(std::io::stderr()));
    // Colours only for a person at a terminal, never into a log file.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_timer(LogClock)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    guard
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_writer = init_logging(cli.log_format);
    let outcome = tokio::runtime::Runtime::new()
        .map_err(|error| format!("cannot start the runtime: {error}"))
        .and_then(|runtime| runtime.block_on(run(cli)));
    // The last log lines first, then the verdict.
    drop(log_writer);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("contactsd: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let store = store::open(&cli.db)
        .await
        .map_err(|error| format!("cannot open the database: {error}"))?;
    match cli.command {
        Command::Serve(args) => {
            let settings = ServiceSettings {
                token_ttl: args.token_ttl,
                rate_limit: args.rate_limit,
                token_rate_limit: args.token_rate_limit,
                max_group_depth: args.max_group_depth,
                read_cache_ttl: Duration::from_millis(args.read_cache_ms),
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
fn read_snapshot(path: &std::path::Path) -> Result<Snapshot, String> {
    let file = std::fs::File::open(path)
        .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    let size = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let progress = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr())
        .with_style(
            ProgressStyle::with_template(
                "reading   {bar:40} {binary_bytes}/{binary_total_bytes} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
    let file = progress.wrap_read(file);
    let name = path.to_string_lossy().to_lowercase();
    let (name, reader): (&str, Box<dyn std::io::Read>) = match name.strip_suffix(".gz") {
        Some(inner) => (inner, Box::new(flate2::read::GzDecoder::new(file))),
        None => (name.as_str(), Box::new(file)),
    };
    let snapshot = if name.ends_with(".csv") {
        read_csv(reader)
    } else if name.ends_with(".ndjson") || name.ends_with(".jsonl") {
        http::sync::read_snapshot(reader, true)
    } else if name.ends_with(".json") {
        http::sync::read_snapshot(reader, false)
    } else {
        Err(format!(
            "{}: the file name must end in .json, .ndjson, .jsonl or .csv (optionally .gz)",
            path.display()
        ))
    };
    progress.finish();
    snapshot
}

/// The CSV snapshot: a header row, then one row per group (`kind` = `group`) or member
/// (`kind` = `member`); columns `kind, remote_id, name, parent_remote_id, order, openid,
/// nickname, avatar, role, group_remote_ids` (remote ids separated by `|`). Empty cells take
/// the defaults.
fn read_csv(reader: impl std::io::Read) -> Result<Snapshot, String> {
    #[derive(serde::Deserialize)]
    struct Row {
        kind: String,
        #[serde(default)]
        remote_id: String,
        #[serde(default)]
        name: String,
        #[serde(default)]
        parent_remote_id: String,
        order: Option<i64>,
        #[serde(default)]
        openid: String,
        #[serde(default)]
        nickname: String,
        #[serde(default)]
        avatar: String,
        role: Option<i64>,
        #[serde(default)]
        group_remote_ids: String,
    }
    let mut snapshot = Snapshot::default();
    let mut rows = csv::Reader::from_reader(reader);
    for (number, row) in rows.deserialize::<Row>().enumerate() {
        let row = row.map_err(|error| format!("CSV row {}: {error}", number + 2))?;
        match row.kind.as_str() {
            "group" => snapshot.groups.push(SnapshotGroup {
                remote_id: row.remote_id,
                name: row.name,
                parent_remote_id: row.parent_remote_id,
                order: row.order.unwrap_or(0),
            }),
            "member" => snapshot.members.push(SnapshotMember {
                openid: row.openid,
                nickname: row.nickname,
                avatar: row.avatar,
                role: row.role.unwrap_or(Role::Member.code()),
                group_remote_ids: row
                    .group_remote_ids
                    .split('|')
                    .filter(|id| !id.is_empty())
                    .map(str::to_owned)
                    .collect(),
            }),
            other => {
                return Err(format!(
                    "CSV row {}: kind must be group or member, not {other:?}",
                    number + 2
                ));
            }
        }
    }
    Ok(snapshot)
}

async fn sync_file(service: &Service, args: &SyncArgs) -> Result<serde_json::Value, String> {
    let path = args.file.clone();
    let snapshot = tokio::task::spawn_blocking(move || read_snapshot(&path))
        .await
        .map_err(|error| format!("reading the snapshot stopped: {error}"))??;
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
            let mut report = serde_json::to_value(&outcome.report).map_err(|e| e.to_string())?;
            report["dry_run"] = json!(outcome.dry_run);
            report["elapsed_ms"] = json!(outcome.elapsed_ms);
            Ok(report)
        }
        Err(ServiceError::SyncRefused(SyncRefusal::Problems(problems))) => {
            let listed = serde_json::to_string_pretty(&problems).map_err(|e| e.to_string())?;
            Err(format!(
                "the snapshot has problems; nothing was changed:\n{listed}"
            ))
        }
        Err(ServiceError::SyncRefused(SyncRefusal::TooManyDeletes { groups, members })) => {
            Err(format!(
                "the snapshot would delete {groups} groups and remove {members} members; \
                 nothing was changed (pass --allow-mass-delete to proceed)"
            ))
        }
        Err(ServiceError::TeamNotFound) => Err(format!("no team {}", args.team_id)),
        Err(ServiceError::InvalidCredential) => {
            Err(format!("team {} has no team app to sync for", args.team_id))
        }
        Err(other) => Err(other.to_string()),
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

async fn scim_token(
    service: &Service,
    command: ScimTokenCommand,
) -> Result<serde_json::Value, String> {
    let record = |t: crate::store::scim::ScimTokenRecord| json!({"id": t.id, "team_id": t.team_id, "created_at": t.created_at});
    match command {
        ScimTokenCommand::Create { team_id } => {
            let token = service
                .create_scim_token(team_id)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({"id": token.id, "team_id": token.team_id, "token": token.token}))
        }
        ScimTokenCommand::List { team_id } => {
            let tokens = service
                .scim_tokens(team_id)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({"list": tokens.into_iter().map(record).collect::<Vec<_>>()}))
        }
        ScimTokenCommand::Revoke { id } => match service.revoke_scim_token(id).await {
            Ok(Some(token)) => Ok(record(token)),
            Ok(None) => Err(format!("no SCIM token with id {id}")),
            Err(e) => Err(e.to_string()),
        },
    }
}

async fn admin(service: &Service, command: AdminCommand) -> Result<serde_json::Value, String> {
    match command {
        AdminCommand::CreateOrg {
            name,
            plan,
            admin_seats,
        } => {
            let name = values::org_name(&name).map_err(|e| e.to_string())?;
            let (org, app) = service
                .create_org_with_app(&name, plan.into(), admin_seats)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({
                "org_id": org.org_id,
                "team_id": org.team_id,
                "appid": app.appid,
                "secret": app.secret,
            }))
        }
        AdminCommand::CreatePlatformApp { name } => {
            let name = values::org_name(&name).map_err(|e| e.to_string())?;
            let app = service
                .create_platform_app(&name)
                .await
                .map_err(|e| e.to_string())?;
            Ok(json!({"appid": app.appid, "secret": app.secret}))
        }
        AdminCommand::RotateSecret { appid } => {
            let app = service.rotate_secret(&appid).await.map_err(|e| match e {
                crate::service::ServiceError::InvalidCredential => {
                    format!("no app with appid {appid:?}")
                }
                other => other.to_string(),
            })?;
            Ok(json!({"appid": app.appid, "secret": app.secret}))
        }
        AdminCommand::ScimToken { command } => scim_token(service, command).await,
        AdminCommand::Check { .. } => {
            let checks = service
                .check_directories()
                .await
                .map_err(|e| e.to_string())?;
            let broken: Vec<_> = checks
                .iter()
                .filter(|check| !check.violations.is_empty())
                .map(|check| json!({"team_id": check.team_id, "violations": check.violations}))
                .collect();
            let dangling = service
                .check_references()
                .await
                .map_err(|e| e.to_string())?;
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
                Err(format!("invariants are violated:\n{report:#}"))
            }
        }
    }
}

/// On a database without any app, create a platform app and a demo org and show how to use
/// them: the first run is usable at once.
async fn bootstrap(service: &Service, listen: SocketAddr) -> Result<(), String> {
    if !service.is_empty().await.map_err(|e| e.to_string())? {
        return Ok(());
    }
    let platform = service
        .create_platform_app("platform")
        .await
        .map_err(|e| e.to_string())?;
    let (demo, app) = service
        .create_org_with_app("Demo", Plan::Business, 10)
        .await
        .map_err(|e| e.to_string())?;
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

async fn serve(service: Arc<Service>, args: &ServeArgs) -> Result<(), String> {
    bootstrap(&service, args.listen).await?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
    let router = http::router(
        service,
        HttpSettings {
            time_offset: args.time_offset,
            sync_body_limit: args.sync_body_limit,
            ..HttpSettings::default()
        },
    );
    let connections = ConnectionSettings {
        max_connections: args.max_connections as usize,
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
