//! `contactsd sync`: a snapshot file applied to a directory, as the sync route would.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::domain::sync::{Snapshot, SyncMode, SyncOptions, SyncRefusal};
use crate::domain::values::TeamId;
use crate::service::{Service, ServiceError};
use crate::snapshot::{self, Format, SnapshotLimits};

#[derive(Debug, Args)]
pub(super) struct SyncArgs {
    #[arg(long)]
    team_id: TeamId,
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
    pub(super) max_group_depth: u32,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ModeArg {
    Upsert,
    Replace,
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
        max_bytes: snapshot::MOST_BYTES,
        ..SnapshotLimits::default()
    };
    // Options inside a file are ignored: on the command line, the flags decide.
    let parsed = snapshot::read(progress.wrap_read(file), format, gzip, &limits)
        .with_context(|| format!("cannot read {}", path.display()));
    progress.finish();
    Ok(parsed?.snapshot)
}

pub(super) async fn sync_file(service: &Service, args: &SyncArgs) -> Result<serde_json::Value> {
    let path = args.file.clone();
    let snapshot = tokio::task::spawn_blocking(move || read_snapshot(&path))
        .await
        .context("reading the snapshot stopped")??;
    eprintln!(
        "contactsd: syncing {} groups and {} members into team {}{}",
        snapshot.group_count(),
        snapshot.member_count(),
        args.team_id,
        if args.dry_run { " (dry run)" } else { "" }
    );
    let options = SyncOptions {
        mode: match args.mode {
            ModeArg::Upsert => SyncMode::Upsert,
            ModeArg::Replace => SyncMode::Replace,
        },
        allow_mass_delete: args.allow_mass_delete,
        dry_run: args.dry_run,
    };
    let progress = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
        .with_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        )
        .with_message("validating, planning and writing");
    progress.enable_steady_tick(Duration::from_millis(120));
    let outcome = service
        .sync_as_team_app(args.team_id, &snapshot, options)
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
