//! The `contactsd` command line: settings, `serve`, and the operator's `admin` commands.
//!
//! Every setting is a flag and an environment variable (a flag wins), as listed in the
//! contract's §10. Commands other than `serve` print one JSON object on stdout on success, and
//! a message on stderr (the error with its causes) with a non-zero exit on failure.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use crate::service::{Service, ServiceSettings};
use crate::store;
use crate::telemetry::{self, LogFormat};

mod admin;
mod serve;
mod sync;

use admin::AdminCommand;
use serve::ServeArgs;
use sync::SyncArgs;

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

    /// SQLite only: `full` (an acknowledged write survives a power loss) or `normal` (faster
    /// writes; the last acknowledged writes may be lost on power loss or an operating-system
    /// crash, never on a crash of the process).
    #[arg(
        long,
        env = "CONTACTSD_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value = "full",
        global = true
    )]
    sqlite_synchronous: store::SqliteSynchronous,

    /// Seconds a write waits for the database's write path (on SQLite, behind another team's
    /// large sync) before it is refused with `ResourceExhausted` / `request_rate_limited` and a
    /// `Retry-After`, to be retried; nothing of a refused write is stored.
    #[arg(long, env = "CONTACTSD_WRITE_WAIT_SECONDS", default_value_t = store::StoreSettings::default().write_wait.as_secs(), value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    write_wait_seconds: u64,

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
        sqlite_synchronous: cli.sqlite_synchronous,
        write_wait: std::time::Duration::from_secs(cli.write_wait_seconds),
    };
    let store = store::open(&cli.db, &store_settings)
        .await
        .context("cannot open the database")?;
    match cli.command {
        Command::Serve(args) => {
            let mut service = Service::new(store, args.service_settings());
            if let Some(metrics) = args.metrics() {
                service = service.with_metrics(metrics);
            }
            let service = Arc::new(service);
            serve::serve(service, &args).await
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
            let output = admin::admin(&service, command).await?;
            println!("{output}");
            Ok(())
        }
        Command::Sync(args) => {
            let settings = ServiceSettings {
                max_group_depth: args.max_group_depth,
                ..ServiceSettings::default()
            };
            let service = Service::new(store, settings);
            let output = sync::sync_file(&service, &args).await?;
            println!("{output}");
            Ok(())
        }
    }
}
