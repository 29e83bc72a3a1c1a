//! The checks every answer goes through ([`check_envelope`]) and the assertions tests state
//! with them ([`assert_ok`], [`assert_error`], [`assert_time`]); percent-encoding for paths
//! and queries.

use chrono::{DateTime, FixedOffset, SecondsFormat};
use contactsd::http::HttpStatus;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::app::ApiResponse;

/// The contract's table (§2): the HTTP status of an answer in mapped mode, judged by its
/// `code` and `error.type` (and, where one pair has two statuses, its message), with the
/// statuses its code may have.
fn mapped_status(code: &str, error_type: &str, body: &Value) -> (u16, &'static [u16]) {
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let allowed: &'static [u16] = match code {
        "OK" => &[200],
        "InvalidArgument" => &[400, 409, 413],
        "PermissionDenied" => &[401, 403],
        "NotFound" => &[404],
        "AlreadyExists" => &[409],
        "ResourceExhausted" => &[429],
        "InternalServerError" => &[500, 503],
        "NoRoute" => &[404, 405],
        other => panic!("{code:?} is not a code of the reference set ({other})"),
    };
    let status = match error_type {
        "" => 200,
        "invalid_argument" if message.contains("too large") => 413,
        "invalid_argument" | "events_expired" => 400,
        "group_too_deep"
        | "default_group_be_modified"
        | "group_not_empty"
        | "group_cycle"
        | "exceed_user_limit"
        | "sync_deletes_too_many" => 409,
        "invalid_token" | "invalid_credential" => 401,
        "claim_error" | "invalid_org_subscription" => 403,
        "duplicated_remote_id" | "contacts_user_existed" => 409,
        "request_rate_limited"
        | "org_resource_exhausted"
        | "sync_in_progress"
        | "group_quota_exceeded"
        | "member_quota_exceeded"
        | "org_quota_exceeded"
        | "webhook_quota_exceeded" => 429,
        "internal_error" if message.contains("database does not answer") => 503,
        "internal_error" => 500,
        "no_route" if message.contains("method not allowed") => 405,
        "no_route" => 404,
        other if other.ends_with("_not_found") => 404,
        other => panic!("{other:?} is not an error type of the contract"),
    };
    (status, allowed)
}

/// The HTTP status mode of test apps: the default (`200`), or `mapped` when
/// `CONTACTSD_TEST_HTTP_STATUS=mapped` (CI runs the suite in both).
pub fn test_http_status() -> HttpStatus {
    match std::env::var("CONTACTSD_TEST_HTTP_STATUS").as_deref() {
        Ok("mapped") => HttpStatus::Mapped,
        _ => HttpStatus::Ok,
    }
}

/// Checks the envelope and the HTTP status of an answer; returns the status the answer has in
/// mapped mode, which tests judge (in the default mode every answer is HTTP 200).
#[track_caller]
pub(super) fn check_envelope(
    request: &str,
    status: u16,
    headers: &HeaderMap,
    body: &Value,
    mode: HttpStatus,
) -> u16 {
    let context = || format!("{request}: answer {status} {body}");
    let object = body
        .as_object()
        .unwrap_or_else(|| panic!("{}: the envelope is not an object", context()));
    for field in ["code", "error", "data", "request_id"] {
        assert!(
            object.contains_key(field),
            "{}: the envelope lacks `{field}`",
            context()
        );
    }
    let code = body["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: `code` is not a string", context()));
    let error_type = body["error"]["type"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: `error.type` is not a string", context()));
    assert!(
        body["data"].is_object(),
        "{}: `data` is not an object",
        context()
    );
    let request_id = body["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{}: `request_id` is not a string", context()));
    assert!(
        uuid::Uuid::parse_str(request_id).is_ok(),
        "{}: `request_id` is not a UUID",
        context()
    );
    let header = headers
        .get("x-request-id")
        .unwrap_or_else(|| panic!("{}: no x-request-id header", context()))
        .to_str()
        .expect("x-request-id is ASCII");
    assert_eq!(
        header,
        request_id,
        "{}: x-request-id header differs from the body's request_id",
        context()
    );
    let (mapped, allowed) = mapped_status(code, error_type, body);
    let expected = if request.ends_with("/healthz") || mode == HttpStatus::Mapped {
        mapped
    } else {
        200
    };
    assert!(
        allowed.contains(&mapped),
        "{}: {code}/{error_type} is not a pair of the contract's table",
        context()
    );
    assert_eq!(
        status,
        expected,
        "{}: HTTP status in {mode:?} mode does not follow {code}/{error_type}",
        context()
    );
    if code == "OK" {
        assert_eq!(error_type, "", "{}: success with an error type", context());
    } else {
        assert_ne!(
            error_type,
            "",
            "{}: failure without an error type",
            context()
        );
        // Only a refused sync explains itself in `data` (its problems, or the brake's figures).
        if !request.contains("/sync") {
            assert_eq!(
                body["data"],
                json!({}),
                "{}: a failure carries data",
                context()
            );
        }
    }
    mapped_status(code, error_type, body).0
}

/// `data` of a successful answer.
#[track_caller]
pub fn assert_ok(response: &ApiResponse) -> Value {
    assert!(
        response.status == 200 && response.body["code"] == "OK",
        "{}: expected success, got {} {}",
        response.request,
        response.status,
        response.body
    );
    response.body["data"].clone()
}

/// A failure with exactly this HTTP status, `code` and `error.type`.
#[track_caller]
pub fn assert_error(response: &ApiResponse, status: u16, code: &str, error_type: &str) {
    assert!(
        response.status == status
            && response.body["code"] == code
            && response.body["error"]["type"] == error_type,
        "{}: expected {status} {code}/{error_type}, got {} {}",
        response.request,
        response.status,
        response.body
    );
}

/// `raw` percent-encoded for a query string.
pub fn encode(raw: &str) -> String {
    form_urlencoded::byte_serialize(raw.as_bytes()).collect()
}

/// `raw` percent-encoded as one path segment (everything but ASCII letters and digits).
pub fn encode_segment(raw: &str) -> String {
    raw.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// A time as the contract writes it: RFC 3339, second precision, the given explicit offset.
#[track_caller]
pub fn assert_time(value: &Value, offset: &str) -> DateTime<FixedOffset> {
    let raw = value
        .as_str()
        .unwrap_or_else(|| panic!("time {value} is not a string"));
    let time = DateTime::parse_from_rfc3339(raw)
        .unwrap_or_else(|error| panic!("time {raw:?} is not RFC 3339: {error}"));
    assert_eq!(
        time.to_rfc3339_opts(SecondsFormat::Secs, false),
        raw,
        "time {raw:?} is not written like 2021-06-24T18:24:45+08:00"
    );
    assert!(
        raw.ends_with(offset),
        "time {raw:?} is not in offset {offset}"
    );
    time
}
