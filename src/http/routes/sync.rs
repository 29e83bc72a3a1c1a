//! `POST /api/contacts/teams/{team_id}/sync`: the snapshot upload.
//!
//! Snapshots of a large directory arrive as one request of hundreds of megabytes, so the body
//! is parsed as it streams in, on a blocking thread, by [`crate::snapshot`] (JSON, or NDJSON
//! with one tagged object per line, optionally gzip-compressed), which refuses it as soon as
//! one of its limits is crossed. The caller's sync slot is taken before the first byte is read,
//! and the whole body must arrive within the route's time limit.

use std::io;
use std::pin::Pin;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::header;
use futures_util::{Stream, StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::time::Instant;
use tokio_util::io::{StreamReader, SyncIoBridge};
use utoipa::openapi::schema::ObjectBuilder;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{AppidQuery, TeamPath};
use crate::domain::sync::{Problem, SyncMode, SyncOptions, SyncRefusal};
use crate::http::AppState;
use crate::http::describe::{
    self, Avatar, GroupName, Nickname, Openid, RemoteId, SnapshotRemoteId, Success, failures,
    team_body,
};
use crate::http::envelope::{ApiError, Reply};
use crate::http::extract::{QueryParams, TeamCall};
use crate::service::ServiceError;
use crate::snapshot::{self, Format, SnapshotError, SnapshotLimits, SnapshotOptions};

/// The body's chunks, ended by an error once `deadline` has passed.
fn until(
    deadline: Instant,
    body: impl Stream<Item = io::Result<Bytes>> + Send + Unpin + 'static,
) -> Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>> {
    Box::pin(futures_util::stream::unfold(
        Some(body),
        move |body| async move {
            let mut body = body?;
            match tokio::time::timeout_at(deadline, body.next()).await {
                Ok(Some(chunk)) => Some((chunk, Some(body))),
                Ok(None) => None,
                Err(_) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the body took longer than the sync body time limit",
                    )),
                    None,
                )),
            }
        },
    ))
}

/// The options the query gives, checked before any of the body is read: a malformed parameter
/// is refused even where the body's own options would win.
fn query_options(query: &QueryParams) -> Result<SnapshotOptions, ApiError> {
    let mode = match query.single("mode")? {
        None => None,
        Some(raw) => Some(
            SyncMode::parse(raw)
                .ok_or_else(|| ApiError::invalid("mode must be upsert or replace"))?,
        ),
    };
    Ok(SnapshotOptions {
        mode,
        dry_run: query.optional_flag("dry_run")?,
        allow_mass_delete: query.optional_flag("allow_mass_delete")?,
    })
}

/// The sync's options and whether it is a dry run: the body's options win over the query's.
fn sync_options(query: SnapshotOptions, body: SnapshotOptions) -> SyncOptions {
    SyncOptions {
        mode: body.mode.or(query.mode).unwrap_or(SyncMode::Upsert),
        allow_mass_delete: body
            .allow_mass_delete
            .or(query.allow_mass_delete)
            .unwrap_or(false),
        dry_run: body.dry_run.or(query.dry_run).unwrap_or(false),
    }
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

/// A snapshot as a JSON body (no field may be `null`). As NDJSON, each line is one object tagged by `kind`:
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
    #[schema(nullable = false, value_type = Option<String>, pattern = "^(upsert|replace)$")]
    mode: Option<String>,
    /// Answer what would change, and change nothing.
    #[schema(nullable = false)]
    dry_run: Option<bool>,
    /// Lift the brake that refuses a `replace` deleting more than 50 rows and more than 20%.
    #[schema(nullable = false)]
    allow_mass_delete: Option<bool>,
    #[schema(nullable = false)]
    groups: Option<Vec<SnapshotGroupDoc>>,
    #[schema(nullable = false)]
    members: Option<Vec<SnapshotMemberDoc>>,
}

/// `SnapshotGroup`: a group, keyed by its remote id.
#[derive(ToSchema)]
#[schema(as = SnapshotGroup)]
#[allow(dead_code, reason = "describes SnapshotGroup for the API description")]
pub struct SnapshotGroupDoc {
    #[schema(value_type = SnapshotRemoteId)]
    remote_id: String,
    #[schema(value_type = GroupName)]
    name: String,
    /// The parent's remote id; `""` (the default) for the top level.
    #[schema(nullable = false, value_type = Option<RemoteId>)]
    parent_remote_id: Option<String>,
    #[schema(nullable = false, minimum = -2147483648_i64, maximum = 2147483647_i64)]
    order: Option<i64>,
}

/// `SnapshotMember`: a member, keyed by the app's openid (registered if new).
#[derive(ToSchema)]
#[schema(as = SnapshotMember)]
#[allow(dead_code, reason = "describes SnapshotMember for the API description")]
pub struct SnapshotMemberDoc {
    #[schema(value_type = Openid)]
    openid: String,
    #[schema(nullable = false, value_type = Option<Nickname>)]
    nickname: Option<String>,
    #[schema(nullable = false, value_type = Option<Avatar>)]
    avatar: Option<String>,
    #[schema(schema_with = snapshot_member_role)]
    role: Option<i64>,
    /// The member's groups by remote id; `[]` = the root only.
    #[schema(nullable = false, value_type = Option<Vec<SnapshotRemoteId>>)]
    group_remote_ids: Option<Vec<String>>,
}

fn snapshot_member_role() -> ObjectBuilder {
    describe::assignable_role("`2`, `3` or `4` (the default).", false)
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

/// The query of the sync call (the body's options win; the query's are checked all the same).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query string; query_options reads it"
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
    ServiceError::SyncInProgress("a sync of this directory is in progress; retry when it has ended"),
    SnapshotError::TooLarge { limit: SnapshotLimits::DEFAULT_MAX_BYTES },
);

/// Sync a directory to a snapshot (an extension).
///
/// Makes the directory equal to the snapshot in one transaction: groups are keyed by
/// `remote_id`, members by the app's `openid`; what it creates or changes gets `source: 2`.
/// A snapshot with problems changes nothing and lists them (at most 100) in `data.problems`.
/// The body is `application/json` or `application/x-ndjson`, optionally with
/// `Content-Encoding: gzip`, and has limits of its own (448 MiB decompressed, 1 M groups and
/// 5 M members by default, and the contract's field limits, enforced as it arrives). One sync
/// per directory runs at a time: another is `ResourceExhausted` / `sync_in_progress`.
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
    TeamCall(state, caller, team_id): TeamCall,
    query: QueryParams,
    request: Request,
) -> Result<Reply, ApiError> {
    // Tenancy, plan and a free sync slot first: a caller that may not sync the team now gets
    // no body read.
    let slot = state.service.sync_slot(&caller, team_id).await?;
    let query_options = query_options(&query)?;
    let headers = request.headers();
    let format = Format::from_content_type(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok()),
    );
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
    let limits = state.settings.sync_limits;
    let deadline = Instant::now() + state.settings.sync_body_timeout;
    let body = request
        .into_body()
        .into_data_stream()
        .map_err(io::Error::other);
    let bridge = SyncIoBridge::new(StreamReader::new(until(deadline, body)));
    let parsed = tokio::task::spawn_blocking(move || snapshot::read(bridge, format, gzip, &limits))
        .await
        .map_err(|error| ApiError::internal(format!("snapshot parser stopped: {error}")))??;
    let options = sync_options(query_options, parsed.options);
    let outcome = state
        .service
        .sync_directory(&caller, &slot, &parsed.snapshot, options)
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
