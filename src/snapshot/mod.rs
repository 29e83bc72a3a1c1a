//! Snapshot formats: the bytes of a directory snapshot (JSON, NDJSON or CSV, optionally
//! gzip-compressed) turned into a [`Snapshot`] under the limits of the contract.
//!
//! Both doors of a sync read snapshots here: the sync route (a request body) and `contactsd
//! sync` (a file). Every limit is enforced while the bytes stream in, so a reader never holds
//! much more than the snapshot it is allowed to hold and an over-limit snapshot is refused as
//! soon as the limit is crossed:
//!
//! - [`guard`]: the decompressed size, the length of any single string or number token, and
//!   the JSON nesting depth, counted byte by byte before the parser buffers anything;
//! - [`json`] and [`csv`]: each field's length (names, ids, nickname, avatar), each member's
//!   number of groups, and the numbers of groups and members, checked as each value is parsed
//!   (no intermediate document is built).
//!
//! What needs the whole snapshot (unknown parents, cycles, the depth of the group tree,
//! duplicates) is the planner's, in [`crate::domain::sync`]; so is the rest of each field's
//! rule (`/` in a name, control characters), which the planner applies by parsing each value
//! into its type of [`crate::domain::values`], so that a bad value is reported as a problem of
//! its group or member rather than refusing the whole snapshot.
//!
//! Layering: this module depends on [`crate::domain`] only (no HTTP, no database); the HTTP
//! layer and the command line call it.

mod csv;
mod guard;
mod json;

use std::io::{self, Read};

use thiserror::Error;

use crate::domain::sync::{Snapshot, SyncMode};

/// Limits of one snapshot besides the contract's field limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotLimits {
    /// Bytes after decompression (at most [`MOST_BYTES`] are read whatever it says).
    pub max_bytes: u64,
    pub max_groups: usize,
    pub max_members: usize,
}

impl SnapshotLimits {
    /// The contract's scale of one directory: 1 M groups and 5 M members.
    pub const DEFAULT_MAX_GROUPS: usize = 1_000_000;
    pub const DEFAULT_MAX_MEMBERS: usize = 5_000_000;
    /// 448 MiB: a directory of 1 M groups and 5 M members as compact JSON with values of
    /// typical length (75 bytes a group, 76 a member: 434 MiB; see docs/SYNC.md).
    pub const DEFAULT_MAX_BYTES: u64 = 448 * 1024 * 1024;
}

/// The most bytes (after decompression) any snapshot may have, whatever its limits say: a parsed
/// [`Snapshot`] addresses its strings and group lists with 32-bit offsets, and a snapshot's
/// strings and group references never take more bytes than its text.
pub const MOST_BYTES: u64 = u32::MAX as u64;

impl Default for SnapshotLimits {
    fn default() -> Self {
        SnapshotLimits {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_groups: Self::DEFAULT_MAX_GROUPS,
            max_members: Self::DEFAULT_MAX_MEMBERS,
        }
    }
}

/// How a snapshot is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One object: options, `groups` and `members`.
    Json,
    /// One object per line, tagged by `kind`: `options`, `group` or `member`.
    Ndjson,
    /// A header row, then one row per group or member (docs/SYNC.md lists the columns).
    Csv,
}

impl Format {
    /// The format a request's `Content-Type` names: NDJSON for `application/x-ndjson` (or
    /// `jsonl`), else JSON.
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        match content_type {
            Some(value) if value.contains("ndjson") || value.contains("jsonl") => Format::Ndjson,
            _ => Format::Json,
        }
    }

    /// The format a file's name names, and whether it is gzip-compressed (`.gz` after it).
    pub fn from_file_name(name: &str) -> Option<(Format, bool)> {
        let name = name.to_lowercase();
        let (inner, gzip) = match name.strip_suffix(".gz") {
            Some(inner) => (inner, true),
            None => (name.as_str(), false),
        };
        let format = if inner.ends_with(".csv") {
            Format::Csv
        } else if inner.ends_with(".ndjson") || inner.ends_with(".jsonl") {
            Format::Ndjson
        } else if inner.ends_with(".json") {
            Format::Json
        } else {
            return None;
        };
        Some((format, gzip))
    }
}

/// The options a snapshot may carry (JSON and NDJSON only); `None` where it says nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotOptions {
    pub mode: Option<SyncMode>,
    pub dry_run: Option<bool>,
    pub allow_mass_delete: Option<bool>,
}

/// A snapshot and the options it carried.
#[derive(Debug, Default)]
pub struct Parsed {
    pub snapshot: Snapshot,
    pub options: SnapshotOptions,
}

/// Why a snapshot was refused.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// Over [`SnapshotLimits::max_bytes`] after decompression.
    #[error("the snapshot is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    /// The source gave up waiting (the sync route's time limit for a body).
    #[error("the snapshot did not arrive in time: {0}")]
    TimedOut(#[source] io::Error),
    /// Not a snapshot, or over one of its limits; the message names the field and place.
    #[error("invalid snapshot: {0}")]
    Invalid(String),
    /// The bytes could not be read or decompressed.
    #[error("the snapshot could not be read: {0}")]
    Read(#[source] io::Error),
}

impl SnapshotError {
    /// The refusal an I/O error stands for: a guard's, the source's time limit, or a read
    /// failure.
    fn from_io(error: io::Error) -> SnapshotError {
        if let Some(tripped) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<guard::Tripped>())
        {
            return match tripped {
                guard::Tripped::TooLarge { limit } => SnapshotError::TooLarge { limit: *limit },
                other => SnapshotError::Invalid(other.to_string()),
            };
        }
        match error.kind() {
            io::ErrorKind::TimedOut => SnapshotError::TimedOut(error),
            _ => SnapshotError::Read(error),
        }
    }
}

/// Read a snapshot written in `format`, gzip-compressed when `gzip`, within `limits`.
pub fn read(
    reader: impl Read,
    format: Format,
    gzip: bool,
    limits: &SnapshotLimits,
) -> Result<Parsed, SnapshotError> {
    if gzip {
        read_plain(flate2::read::GzDecoder::new(reader), format, limits)
    } else {
        read_plain(reader, format, limits)
    }
}

fn read_plain(
    reader: impl Read,
    format: Format,
    limits: &SnapshotLimits,
) -> Result<Parsed, SnapshotError> {
    let guarded = guard::Guard::new(reader, format, limits.max_bytes.min(MOST_BYTES));
    let reader = io::BufReader::with_capacity(64 * 1024, guarded);
    match format {
        Format::Json => json::read_document(reader, limits),
        Format::Ndjson => json::read_lines(reader, limits),
        Format::Csv => csv::read(reader, limits),
    }
}

/// A field over its limit, named the way the error messages name it.
fn too_long(field: impl std::fmt::Display, max: usize) -> String {
    format!("{field} is longer than {max} characters")
}

/// `value` if it has at most `max` characters (after trimming when `trimmed`; a group name
/// is trimmed before it is checked and stored).
fn bounded(
    field: impl std::fmt::Display,
    value: &str,
    max: usize,
    trimmed: bool,
) -> Result<(), String> {
    let counted = if trimmed { value.trim() } else { value };
    // A character is at least one byte: most values are decided without counting.
    if counted.len() > max && counted.chars().count() > max {
        return Err(too_long(field, max));
    }
    Ok(())
}

/// The count of a list over its limit.
fn too_many(what: &str, max: usize) -> String {
    format!("the snapshot holds more than {max} {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str, format: Format) -> Result<Parsed, SnapshotError> {
        read(body.as_bytes(), format, false, &SnapshotLimits::default())
    }

    fn limited(body: &str, format: Format, limits: SnapshotLimits) -> String {
        match read(body.as_bytes(), format, false, &limits) {
            Ok(_) => panic!("{body:.80} was accepted"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn the_three_formats_read_the_same_snapshot() {
        let json = r#"{"mode":"replace","dry_run":true,"extra":{"x":[1,2]},
            "groups":[{"remote_id":"a","name":"A"},{"remote_id":"b","name":"B","parent_remote_id":"a","order":3}],
            "members":[{"openid":"u1","nickname":"Ann","role":2,"group_remote_ids":["a","b"]},{"openid":"u2"}]}"#;
        let ndjson = "{\"kind\":\"options\",\"mode\":\"replace\",\"dry_run\":true}\n\
            {\"kind\":\"group\",\"remote_id\":\"a\",\"name\":\"A\"}\n\n\
            {\"name\":\"B\",\"kind\":\"group\",\"remote_id\":\"b\",\"parent_remote_id\":\"a\",\"order\":3}\n\
            {\"kind\":\"member\",\"openid\":\"u1\",\"nickname\":\"Ann\",\"role\":2,\"group_remote_ids\":[\"a\",\"b\"]}\n\
            {\"kind\":\"member\",\"openid\":\"u2\"}\n";
        let csv = "kind,remote_id,name,parent_remote_id,order,openid,nickname,avatar,role,group_remote_ids\n\
            group,a,A,,,,,,,\n\
            group,b,B,a,3,,,,,\n\
            member,,,,,u1,Ann,,2,a|b\n\
            member,,,,,u2,,,,\n";
        let from_json = parse(json, Format::Json).expect("JSON");
        let from_ndjson = parse(ndjson, Format::Ndjson).expect("NDJSON");
        let from_csv = parse(csv, Format::Csv).expect("CSV");
        assert_eq!(from_json.snapshot, from_ndjson.snapshot);
        assert_eq!(from_json.snapshot, from_csv.snapshot);
        assert_eq!(from_json.options, from_ndjson.options);
        assert_eq!(from_json.options.mode, Some(SyncMode::Replace));
        assert_eq!(from_csv.options, SnapshotOptions::default());
        let member = from_json.snapshot.member(1);
        assert_eq!((member.role, member.nickname), (4, ""));
        assert_eq!(from_json.snapshot.group(1).order, 3);
    }

    #[test]
    fn each_field_and_list_is_bounded_with_its_name() {
        let long = "x".repeat(65);
        for (body, named) in [
            (
                format!(r#"{{"groups":[{{"remote_id":"{long}","name":"A"}}]}}"#),
                "groups[0].remote_id is longer than 64",
            ),
            (
                format!(
                    r#"{{"groups":[{{"remote_id":"a","name":"A"}},{{"remote_id":"b","name":"{long}"}}]}}"#
                ),
                "groups[1].name is longer than 64",
            ),
            (
                format!(r#"{{"members":[{{"openid":"u","group_remote_ids":["{long}"]}}]}}"#),
                "members[0].group_remote_ids[0] is longer than 64",
            ),
            (
                format!(r#"{{"members":[{{"openid":"{}"}}]}}"#, "o".repeat(129)),
                "members[0].openid is longer than 128",
            ),
            (
                format!(
                    r#"{{"members":[{{"openid":"u","avatar":"{}"}}]}}"#,
                    "a".repeat(256)
                ),
                "members[0].avatar is longer than 255",
            ),
        ] {
            let message = limited(&body, Format::Json, SnapshotLimits::default());
            assert!(message.contains(named), "{message}");
        }
        // A name is trimmed first, as it is stored.
        let padded = format!(
            r#"{{"groups":[{{"remote_id":"a","name":"  {}  "}}]}}"#,
            "n".repeat(64)
        );
        assert!(parse(&padded, Format::Json).is_ok());
        // Characters, not bytes.
        let wide = format!(
            r#"{{"groups":[{{"remote_id":"a","name":"{}"}}]}}"#,
            "界".repeat(64)
        );
        assert!(parse(&wide, Format::Json).is_ok());

        let ids = vec!["\"g\""; 1001].join(",");
        let message = limited(
            &format!(r#"{{"members":[{{"openid":"u","group_remote_ids":[{ids}]}}]}}"#),
            Format::Json,
            SnapshotLimits::default(),
        );
        assert!(
            message.contains("members[0].group_remote_ids holds more than 1000"),
            "{message}"
        );
        let few = SnapshotLimits {
            max_groups: 1,
            max_members: 1,
            ..SnapshotLimits::default()
        };
        let two_groups =
            r#"{"groups":[{"remote_id":"a","name":"A"},{"remote_id":"b","name":"B"}]}"#;
        assert!(limited(two_groups, Format::Json, few).contains("more than 1 groups"));
        let two_members =
            "{\"kind\":\"member\",\"openid\":\"a\"}\n{\"kind\":\"member\",\"openid\":\"b\"}";
        assert!(limited(two_members, Format::Ndjson, few).contains("more than 1 members"));
        let csv = format!("kind,openid,nickname\nmember,u,{}\n", "n".repeat(65));
        assert!(limited(&csv, Format::Csv, few).contains("nickname is longer than 64"));
    }

    #[test]
    fn the_guard_stops_long_tokens_deep_nesting_and_large_bodies() {
        let huge = format!(
            r#"{{"groups":[{{"remote_id":"{}"}}]}}"#,
            "x".repeat(100_000)
        );
        let message = limited(&huge, Format::Json, SnapshotLimits::default());
        assert!(message.contains("longer than 16384 bytes"), "{message}");
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(40), "]".repeat(40));
        let message = limited(&deep, Format::Json, SnapshotLimits::default());
        assert!(message.contains("nested deeper than 16"), "{message}");
        let small = SnapshotLimits {
            max_bytes: 10,
            ..SnapshotLimits::default()
        };
        let error = read(
            r#"{"groups":[]}   "#.as_bytes(),
            Format::Json,
            false,
            &small,
        );
        assert!(matches!(error, Err(SnapshotError::TooLarge { limit: 10 })));
    }

    #[test]
    fn malformed_snapshots_are_invalid_not_panics() {
        for (body, format) in [
            ("", Format::Json),
            ("[]", Format::Json),
            (r#"{"groups":[{"name":"A"}]}"#, Format::Json),
            (
                r#"{"groups":[{"remote_id":"a","name":"A","name":"B"}]}"#,
                Format::Json,
            ),
            (r#"{"groups":[],"groups":[]}"#, Format::Json),
            (r#"{"mode":"merge"}"#, Format::Json),
            (r#"{"members":[{"openid":"u","role":"x"}]}"#, Format::Json),
            (r#"{} x"#, Format::Json),
            ("{\"x\": \"\\ud800\"}", Format::Json),
            ("{\"x\": [{\"y\": \"a\u{0}b\"}]}", Format::Json),
            ("{\"kind\":\"nope\"}", Format::Ndjson),
            ("{\"openid\":\"u\"}", Format::Ndjson),
            ("1", Format::Ndjson),
            ("kind\nteam\n", Format::Csv),
            ("kind,order\ngroup,x\n", Format::Csv),
        ] {
            assert!(
                matches!(parse(body, format), Err(SnapshotError::Invalid(_))),
                "{body:?}"
            );
        }
        // Invalid UTF-8, also in a field that is otherwise skipped.
        for body in [
            &b"{\"x\": \"\xff\xfe\"}"[..],
            b"{\"groups\": [{\"y\": [\"\xc0\xaf\"]}]}",
        ] {
            let parsed = read(body, Format::Json, false, &SnapshotLimits::default());
            assert!(matches!(parsed, Err(SnapshotError::Invalid(_))), "{body:?}");
        }
    }

    #[test]
    fn file_names_and_content_types_name_the_format() {
        assert_eq!(
            Format::from_file_name("a.CSV.gz"),
            Some((Format::Csv, true))
        );
        assert_eq!(
            Format::from_file_name("a.jsonl"),
            Some((Format::Ndjson, false))
        );
        assert_eq!(
            Format::from_file_name("a.json"),
            Some((Format::Json, false))
        );
        assert_eq!(Format::from_file_name("a.txt"), None);
        assert_eq!(
            Format::from_content_type(Some("application/x-ndjson")),
            Format::Ndjson
        );
        assert_eq!(Format::from_content_type(None), Format::Json);
    }
}
