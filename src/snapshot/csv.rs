//! CSV snapshots: a header row, then one row per group (`kind` = `group`) or member (`kind` =
//! `member`); columns `kind, remote_id, name, parent_remote_id, order, openid, nickname,
//! avatar, role, group_remote_ids` (remote ids separated by `|`), in any order, missing
//! columns and empty cells taking the defaults. A row is bounded by the guard's line limit
//! before it is parsed, and its fields by the contract's limits after.

use std::io::Read;

use super::{Parsed, SnapshotError, SnapshotLimits, bounded, too_many};
use crate::domain::sync::{MAX_MEMBER_GROUPS, SnapshotGroup, SnapshotMember};
use crate::domain::values::{MAX_AVATAR_CHARS, MAX_NAME_CHARS, MAX_OPENID_CHARS, Role};

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

pub fn read(reader: impl Read, limits: &SnapshotLimits) -> Result<Parsed, SnapshotError> {
    let mut parsed = Parsed::default();
    let snapshot = &mut parsed.snapshot;
    let mut rows = csv::Reader::from_reader(reader);
    for (index, row) in rows.deserialize::<Row>().enumerate() {
        // Row 1 is the header.
        let number = index + 2;
        let invalid =
            |message: String| SnapshotError::Invalid(format!("CSV row {number}: {message}"));
        let row = row.map_err(|error| {
            if !error.is_io_error() {
                return invalid(error.to_string());
            }
            match error.into_kind() {
                csv::ErrorKind::Io(error) => SnapshotError::from_io(error),
                other => invalid(format!("{other:?}")),
            }
        })?;
        let check = |field: &str, value: &str, max: usize, trimmed: bool| {
            bounded(field, value, max, trimmed).map_err(invalid)
        };
        match row.kind.as_str() {
            "group" => {
                if snapshot.group_count() >= limits.max_groups {
                    return Err(invalid(too_many("groups", limits.max_groups)));
                }
                check("remote_id", &row.remote_id, MAX_NAME_CHARS, false)?;
                check("name", &row.name, MAX_NAME_CHARS, true)?;
                check(
                    "parent_remote_id",
                    &row.parent_remote_id,
                    MAX_NAME_CHARS,
                    false,
                )?;
                snapshot.push_group(SnapshotGroup {
                    remote_id: row.remote_id,
                    name: row.name,
                    parent_remote_id: row.parent_remote_id,
                    order: row.order.unwrap_or(0),
                });
            }
            "member" => {
                if snapshot.member_count() >= limits.max_members {
                    return Err(invalid(too_many("members", limits.max_members)));
                }
                check("openid", &row.openid, MAX_OPENID_CHARS, false)?;
                check("nickname", &row.nickname, MAX_NAME_CHARS, false)?;
                check("avatar", &row.avatar, MAX_AVATAR_CHARS, false)?;
                let mut groups = Vec::new();
                for id in row.group_remote_ids.split('|').filter(|id| !id.is_empty()) {
                    if groups.len() == MAX_MEMBER_GROUPS {
                        return Err(invalid(format!(
                            "group_remote_ids holds more than {MAX_MEMBER_GROUPS} remote ids"
                        )));
                    }
                    check("group_remote_ids", id, MAX_NAME_CHARS, false)?;
                    groups.push(id.to_owned());
                }
                snapshot.push_member(SnapshotMember {
                    openid: row.openid,
                    nickname: row.nickname,
                    avatar: row.avatar,
                    role: row.role.unwrap_or(Role::Member.code()),
                    group_remote_ids: groups,
                });
            }
            other => {
                return Err(invalid(format!(
                    "kind must be group or member, not {other:?}"
                )));
            }
        }
    }
    Ok(parsed)
}
