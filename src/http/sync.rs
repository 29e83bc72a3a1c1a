//! `POST /api/contacts/teams/{team_id}/sync`: the snapshot upload.
//!
//! Snapshots of a large directory arrive as one request of hundreds of megabytes, so the body is
//! parsed as it streams in (`application/json`, or `application/x-ndjson` with one tagged object
//! per line), optionally gzip-compressed, under a limit of its own on the decompressed size.
//! Parsing runs on a blocking thread and never holds the raw body and the parsed snapshot at
//! once.

use std::io::{self, BufRead, BufReader, Read};

use axum::extract::{Path, Request, State};
use axum::http::header;
use futures_util::TryStreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::AppState;
use super::envelope::{ApiError, Reply};
use super::extract::{Authenticated, QueryParams};
use crate::domain::sync::{Snapshot, SnapshotGroup, SnapshotMember, SyncMode, SyncOptions};
use crate::domain::values::TeamId;

/// Options a snapshot may carry (in the JSON body, an NDJSON `options` line, or the query).
#[derive(Debug, Default, Deserialize)]
struct Options {
    mode: Option<String>,
    dry_run: Option<bool>,
    allow_mass_delete: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct JsonSnapshot {
    #[serde(flatten)]
    options: Options,
    #[serde(default)]
    groups: Vec<SnapshotGroup>,
    #[serde(default)]
    members: Vec<SnapshotMember>,
}

/// One line of an NDJSON snapshot.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Line {
    Options(Options),
    Group(SnapshotGroup),
    Member(SnapshotMember),
}

/// Why a body could not be read.
enum BodyError {
    TooLarge,
    Invalid(String),
}

impl From<BodyError> for ApiError {
    fn from(error: BodyError) -> Self {
        match error {
            BodyError::TooLarge => ApiError::too_large(),
            BodyError::Invalid(message) => ApiError::invalid(message),
        }
    }
}

/// A reader that fails once more than `left` bytes have been read.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.left = self
            .left
            .checked_sub(read as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::FileTooLarge, "body too large"))?;
        Ok(read)
    }
}

fn read_error(error: io::Error) -> BodyError {
    if error.kind() == io::ErrorKind::FileTooLarge {
        BodyError::TooLarge
    } else {
        BodyError::Invalid(format!("the body could not be read: {error}"))
    }
}

fn json_error(error: serde_json::Error) -> BodyError {
    match error.io_error_kind() {
        Some(io::ErrorKind::FileTooLarge) => BodyError::TooLarge,
        _ => BodyError::Invalid(format!("invalid snapshot: {error}")),
    }
}

fn parse(reader: impl Read, ndjson: bool) -> Result<(Snapshot, Options), BodyError> {
    let reader = BufReader::with_capacity(256 * 1024, reader);
    if !ndjson {
        let body: JsonSnapshot = serde_json::from_reader(reader).map_err(json_error)?;
        return Ok((
            Snapshot {
                groups: body.groups,
                members: body.members,
            },
            body.options,
        ));
    }
    let mut snapshot = Snapshot::default();
    let mut options = Options::default();
    for (number, line) in reader.lines().enumerate() {
        let line = line.map_err(read_error)?;
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(&line)
            .map_err(|error| BodyError::Invalid(format!("line {}: {error}", number + 1)))?;
        match parsed {
            Line::Options(o) => options = o,
            Line::Group(group) => snapshot.groups.push(group),
            Line::Member(member) => snapshot.members.push(member),
        }
    }
    Ok((snapshot, options))
}

fn sync_options(query: &QueryParams, body: Options) -> Result<(SyncOptions, bool), ApiError> {
    let mode = match body.mode.as_deref().or(query.single("mode")?) {
        None | Some("upsert") => SyncMode::Upsert,
        Some("replace") => SyncMode::Replace,
        Some(_) => return Err(ApiError::invalid("mode must be upsert or replace")),
    };
    let dry_run = match body.dry_run {
        Some(value) => value,
        None => query.flag("dry_run")?,
    };
    let allow_mass_delete = match body.allow_mass_delete {
        Some(value) => value,
        None => query.flag("allow_mass_delete")?,
    };
    Ok((
        SyncOptions {
            mode,
            allow_mass_delete,
        },
        dry_run,
    ))
}

#[derive(Serialize)]
struct SyncData {
    dry_run: bool,
    #[serde(flatten)]
    report: crate::domain::sync::SyncReport,
    elapsed_ms: u64,
}

pub async fn sync_directory(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(team_id): Path<TeamId>,
    query: QueryParams,
    request: Request,
) -> Result<Reply, ApiError> {
    let headers = request.headers();
    let ndjson = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("ndjson") || value.contains("jsonl"));
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|value| value.to_str().ok())
    {
        None | Some("identity") => false,
        Some("gzip") => true,
        Some(_) => {
            return Err(ApiError::invalid(
                "Content-Encoding must be gzip or identity",
            ));
        }
    };
    let limit = state.settings.sync_body_limit as u64;
    let stream = request
        .into_body()
        .into_data_stream()
        .map_err(io::Error::other);
    let bridge = SyncIoBridge::new(StreamReader::new(stream));
    let parsed = tokio::task::spawn_blocking(move || {
        if gzip {
            let inflated = flate2::read::GzDecoder::new(bridge);
            parse(
                Capped {
                    inner: inflated,
                    left: limit,
                },
                ndjson,
            )
        } else {
            parse(
                Capped {
                    inner: bridge,
                    left: limit,
                },
                ndjson,
            )
        }
    })
    .await
    .map_err(|error| ApiError::internal(format!("snapshot parser stopped: {error}")))?;
    let (snapshot, body_options) = parsed?;
    let (options, dry_run) = sync_options(&query, body_options)?;
    let outcome = state
        .service
        .sync_directory(&caller, team_id, &snapshot, options, dry_run)
        .await?;
    Reply::data(&SyncData {
        dry_run: outcome.dry_run,
        report: outcome.report,
        elapsed_ms: outcome.elapsed_ms,
    })
}
