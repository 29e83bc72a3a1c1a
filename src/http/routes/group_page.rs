//! The hottest answer, a page of groups, written by hand from the directory's rows (see
//! [`crate::http::json`]) exactly as serde writes a page of [`GroupData`]; a property test
//! compares the two.

#[cfg(doc)]
use super::groups::GroupData;
use crate::domain::directory::{Directory, Group};
use crate::domain::values::TeamId;
use crate::http::json::{JsonText, JsonWriter};
use crate::http::{ApiTime, AppState};

/// A listed group as the directory holds it, written as [`GroupData`] serializes, by hand: a
/// page of groups is the hottest answer (see [`crate::http::json`]). Nothing is copied: the strings
/// are the directory's, and `full_name` is written from the names on the group's path.
struct GroupRow<'a> {
    group: &'a Group,
    team_id: TeamId,
    team_name: &'a str,
    /// The names on the group's path, its own first ([`Directory::names_upwards`]).
    names_upwards: &'a [&'a str],
    created_at: ApiTime,
    upd_at: ApiTime,
}

impl GroupRow<'_> {
    /// The fields in [`GroupData`]'s declared order.
    fn write_json(&self, json: &mut JsonWriter) {
        let group = self.group;
        json.raw("{\"id\":");
        json.int(group.id.get());
        json.raw(",\"team_id\":");
        json.int(self.team_id.get());
        json.raw(",\"parent_id\":");
        json.int(group.parent_id.get());
        json.raw(",\"source\":");
        json.int(group.source.code());
        json.raw(",\"remote_id\":");
        json.str(&group.remote_id);
        json.raw(",\"name\":");
        json.str(&group.name);
        json.raw(",\"full_name\":");
        json.joined_str(
            std::iter::once(self.team_name).chain(self.names_upwards.iter().rev().copied()),
        );
        json.raw(",\"order\":");
        json.int(group.order);
        json.raw(",\"is_valid\":");
        json.bool(group.is_valid);
        json.raw(",\"created_at\":");
        let start = json.len();
        self.created_at.write_json(json);
        let created_at = start..json.len();
        json.raw(",\"upd_at\":");
        let start = json.len();
        if self.upd_at == self.created_at {
            // A group never changed since: the same text again, not formatted twice.
            json.copy(created_at);
        } else {
            self.upd_at.write_json(json);
        }
        let upd_at = start..json.len();
        json.raw(",\"updated_at\":");
        json.copy(upd_at);
        json.raw("}");
    }
}

/// A page of groups as `ListData<GroupData>` serializes, written from the directory's rows.
pub(super) fn group_page_json(
    state: &AppState,
    team_id: TeamId,
    directory: &Directory,
    rows: &[&Group],
    total: u64,
) -> JsonText {
    let mut names = Vec::new();
    write_group_page(rows.len(), total, |n, json| {
        let group = rows[n];
        names.clear();
        directory.names_upwards(group.id, &mut names);
        GroupRow {
            group,
            team_id,
            team_name: directory.team_name(),
            names_upwards: &names,
            created_at: state.time(group.created_at),
            upd_at: state.time(group.upd_at),
        }
        .write_json(json);
    })
}

/// `{"list":[row 0,…,row len-1],"total":total}`, each row written by `write_row(n, …)`.
fn write_group_page(
    len: usize,
    total: u64,
    mut write_row: impl FnMut(usize, &mut JsonWriter),
) -> JsonText {
    let mut json = JsonWriter::with_capacity(64 + 256 * len);
    json.raw("{\"list\":[");
    for n in 0..len {
        if n > 0 {
            json.raw(",");
        }
        write_row(n, &mut json);
    }
    json.raw("],\"total\":");
    json.uint(total);
    json.raw("}");
    JsonText::written(json)
}
#[cfg(test)]
mod tests {
    use chrono::FixedOffset;
    use proptest::prelude::*;

    use super::*;
    use crate::domain::values::{GroupId, GroupName, RemoteId, Source};
    use crate::http::routes::ListData;
    use crate::http::routes::groups::GroupData;

    /// A listed group: its row, its team, the names on its path (its own first) and the
    /// team's time offset.
    type Listed = (Group, TeamId, String, Vec<String>, FixedOffset);

    prop_compose! {
        fn listed()(
            ids in proptest::array::uniform3(any::<i64>()),
            sync in any::<bool>(),
            strings in proptest::array::uniform3(any::<String>()),
            path in proptest::collection::vec(any::<String>(), 0..4),
            order in any::<i64>(),
            is_valid in any::<bool>(),
            created in -70_000_000_000_i64..300_000_000_000,
            updated in prop_oneof![Just(None), (-70_000_000_000_i64..300_000_000_000).prop_map(Some)],
            offset_minutes in -(23 * 60 + 59)..(23 * 60 + 59),
        ) -> Listed {
            let [id, team_id, parent_id] = ids;
            let [remote_id, name, team_name] = strings;
            let group = Group {
                id: GroupId::new(id),
                parent_id: GroupId::new(parent_id),
                source: if sync { Source::Sync } else { Source::Api },
                remote_id: RemoteId::from_stored(remote_id),
                name: GroupName::from_stored(name),
                order,
                is_valid,
                created_at: created,
                upd_at: updated.unwrap_or(created),
            };
            let offset = FixedOffset::east_opt(offset_minutes * 60).expect("offset");
            (group, TeamId::new(team_id), team_name, path, offset)
        }
    }

    proptest! {
        #[test]
        fn a_page_of_groups_is_written_as_serde_writes_it(
            rows in proptest::collection::vec(listed(), 0..4),
            total in any::<u64>(),
        ) {
            let by_hand = write_group_page(rows.len(), total, |n, json| {
                let (group, team_id, team_name, path, offset) = &rows[n];
                let names: Vec<&str> = path.iter().map(String::as_str).collect();
                GroupRow {
                    group,
                    team_id: *team_id,
                    team_name,
                    names_upwards: &names,
                    created_at: ApiTime::new(group.created_at, *offset),
                    upd_at: ApiTime::new(group.upd_at, *offset),
                }
                .write_json(json);
            });
            // What serde writes for the same page, full_name being `team/top/.../own`.
            let list = rows
                .iter()
                .map(|(group, team_id, team_name, path, offset)| GroupData {
                    id: group.id,
                    team_id: *team_id,
                    parent_id: group.parent_id,
                    source: group.source.code(),
                    remote_id: group.remote_id.to_string(),
                    name: group.name.to_string(),
                    full_name: std::iter::once(team_name.as_str())
                        .chain(path.iter().rev().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join("/"),
                    order: group.order,
                    is_valid: group.is_valid,
                    created_at: ApiTime::new(group.created_at, *offset),
                    upd_at: ApiTime::new(group.upd_at, *offset),
                    updated_at: ApiTime::new(group.upd_at, *offset),
                })
                .collect();
            let by_serde = serde_json::to_vec(&ListData { list, total }).expect("serialize");
            prop_assert_eq!(
                String::from_utf8_lossy(by_hand.as_bytes()),
                String::from_utf8_lossy(&by_serde)
            );
        }
    }
}
