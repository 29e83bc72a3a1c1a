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
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppidQuery, TeamPath};
use crate::domain::sync::{
    Problem, Snapshot, SnapshotGroup, SnapshotMember, SyncMode, SyncOptions, SyncRefusal,
};
use crate::domain::values::TeamId;
use crate::http::AppState;
use crate::http::describe::{Success, failures, team_body};
use crate::http::envelope::{ApiError, Reply};
use crate::http::extract::{Authenticated, QueryParams};
use crate::service::ServiceError;

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

/// Read a JSON or NDJSON snapshot from a file (the `contactsd sync` command), ignoring any
/// options it carries: on the command line, the flags decide.
pub fn read_snapshot(reader: impl Read, ndjson: bool) -> Result<Snapshot, String> {
    parse(reader, ndjson)
        .map(|(snapshot, _)| snapshot)
        .map_err(|error| match error {
            BodyError::TooLarge => "the snapshot is too large".to_owned(),
            BodyError::Invalid(message) => message,
        })
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

/// What a sync did (or, in a dry run, would do).
#[derive(Serialize, ToSchema)]
#[schema(as = SyncResult, example = json!({
    "dry_run": false,
    "groups_created": 1, "groups_renamed": 0, "groups_moved": 0, "groups_reordered": 0,
    "groups_deleted": 0, "groups_unchanged": 0,
    "members_added": 1, "members_changed": 0, "members_removed": 0, "members_unchanged": 0,
    "elapsed_ms": 6
}))]
pub struct SyncData {
    dry_run: bool,
    #[serde(flatten)]
    #[schema(inline, value_type = SyncReportDoc)]
    report: crate::domain::sync::SyncReport,
    elapsed_ms: u64,
}

// ----- the description of the sync call (see `crate::http::describe`) -----

type SyncAnswer = Success<SyncData>;

/// `SyncReport` as the wire shows it (the domain type carries no schema).
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes SyncReport for the API description")]
pub struct SyncReportDoc {
    groups_created: u64,
    groups_renamed: u64,
    groups_moved: u64,
    groups_reordered: u64,
    groups_deleted: u64,
    groups_unchanged: u64,
    members_added: u64,
    members_changed: u64,
    members_removed: u64,
    members_unchanged: u64,
}

/// A snapshot as a JSON body. As NDJSON, each line is one object tagged by `kind`:
/// `{"kind": "options", ...}`, `{"kind": "group", ...}` or `{"kind": "member", ...}`.
#[derive(ToSchema)]
#[schema(as = Snapshot, example = json!({
    "mode": "replace",
    "groups": [
        {"remote_id": "sales", "name": "Sales"},
        {"remote_id": "emea", "name": "EMEA", "parent_remote_id": "sales", "order": 1}
    ],
    "members": [
        {"openid": "u-1001", "nickname": "Ada", "role": 4, "group_remote_ids": ["emea"]}
    ]
}))]
#[allow(dead_code, reason = "describes the snapshot for the API description")]
pub struct SnapshotDoc {
    /// `upsert` (the default) changes what the snapshot holds and leaves the rest; `replace`
    /// also deletes the synced groups and removes the synced members the snapshot no longer
    /// holds.
    #[schema(value_type = Option<String>, pattern = "^(upsert|replace)$")]
    mode: Option<String>,
    /// Answer what would change, and change nothing.
    dry_run: Option<bool>,
    /// Lift the brake that refuses a `replace` deleting more than 50 rows and more than 20%.
    allow_mass_delete: Option<bool>,
    groups: Option<Vec<SnapshotGroupDoc>>,
    members: Option<Vec<SnapshotMemberDoc>>,
}

/// `SnapshotGroup`: a group, keyed by its remote id.
#[derive(ToSchema)]
#[schema(as = SnapshotGroup)]
#[allow(dead_code, reason = "describes SnapshotGroup for the API description")]
pub struct SnapshotGroupDoc {
    #[schema(min_length = 1, max_length = 64)]
    remote_id: String,
    #[schema(min_length = 1, max_length = 64)]
    name: String,
    /// The parent's remote id; `""` (the default) for the top level.
    #[schema(max_length = 64)]
    parent_remote_id: Option<String>,
    #[schema(minimum = -2147483648_i64, maximum = 2147483647_i64)]
    order: Option<i64>,
}

/// `SnapshotMember`: a member, keyed by the app's openid (registered if new).
#[derive(ToSchema)]
#[schema(as = SnapshotMember)]
#[allow(dead_code, reason = "describes SnapshotMember for the API description")]
pub struct SnapshotMemberDoc {
    #[schema(min_length = 1, max_length = 128)]
    openid: String,
    #[schema(max_length = 64)]
    nickname: Option<String>,
    #[schema(max_length = 255)]
    avatar: Option<String>,
    /// `2`, `3` or `4` (the default).
    #[schema(minimum = 2, maximum = 4)]
    role: Option<i64>,
    /// The member's groups by remote id; `[]` = the root only.
    group_remote_ids: Option<Vec<String>>,
}

/// The headers the sync call reads besides `Content-Type` (`application/json` or
/// `application/x-ndjson`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "describes the headers; sync_directory reads them")]
pub struct SyncHeaders {
    /// `gzip` for a compressed body.
    #[param(
        rename = "Content-Encoding",
        required = false,
        pattern = "^(gzip|identity)$"
    )]
    content_encoding: String,
}

/// The query of the sync call (the body's options win).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query string; sync_options reads it"
)]
pub struct SyncQuery {
    /// `upsert` (the default) or `replace`.
    #[param(value_type = Option<String>, pattern = "^(upsert|replace)$")]
    mode: Option<String>,
    dry_run: Option<bool>,
    allow_mass_delete: Option<bool>,
}

failures!(SyncFailures: team_body;
    ServiceError::SyncRefused(SyncRefusal::Problems(vec![Problem {
        remote_id: Some("emea".to_owned()),
        openid: None,
        error_type: "parent_group_not_found",
        message: "no group has remote_id \"sales-eu\"".to_owned(),
    }])),
    ServiceError::SyncRefused(SyncRefusal::TooManyDeletes { groups: 60, members: 0 }),
);

/// Sync a directory to a snapshot (an extension).
///
/// Makes the directory equal to the snapshot in one transaction: groups are keyed by
/// `remote_id`, members by the app's `openid`; what it creates or changes gets `source: 2`.
/// A snapshot with problems changes nothing and lists them (at most 100) in `data.problems`.
/// The body is `application/json` or `application/x-ndjson`, optionally with
/// `Content-Encoding: gzip`, and has a size limit of its own (512 MiB decompressed by default).
#[utoipa::path(
    post,
    path = "/api/contacts/teams/{team_id}/sync",
    tag = "sync",
    params(
        TeamPath,
        SyncHeaders,
        SyncQuery,
        AppidQuery,
    ),
    request_body(content(
        (SnapshotDoc = "application/json"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 200, description = "Applied (or, in a dry run, planned).", body = SyncAnswer),
        SyncFailures,
    ),
)]
pub async fn sync_directory(
    State(state): State<AppState>,
    Authenticated(caller): Authenticated,
    Path(team_id): Path<TeamId>,
    query: QueryParams,
    request: Request,
) -> Result<Reply, ApiError> {
    // Tenancy and plan first: a caller that may not touch the team gets no body parsed.
    state.service.check_team_access(&caller, team_id).await?;
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

/// The operations of this resource, each registered with its description.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(sync_directory))
}
