//! The indexes behind the group listing's filters (`include_invalid`, `updated_since`,
//! `keyword`), so that a filtered listing starts from the few groups an index offers instead of
//! every group of the directory: tombstones by parent, every group by `upd_at`, and every group
//! by the three-character sequences of its lower-cased name.

use std::collections::HashMap;

use super::{Group, IdMap, insert_sorted, remove_sorted};
use crate::domain::values::GroupId;

/// Three consecutive characters of a lower-cased name.
type Trigram = [char; 3];

/// See the module documentation. Every group (valid or not) is in `by_update` and `trigrams`;
/// tombstones also in `tombstones`. Each list is ascending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FilterIndexes {
    /// Tombstones by parent.
    tombstones: IdMap<GroupId, Vec<GroupId>>,
    tombstone_count: usize,
    /// Every group as (`upd_at`, id).
    by_update: Vec<(i64, GroupId)>,
    /// Groups whose lower-cased name holds each trigram (client text: the standard hasher).
    trigrams: HashMap<Trigram, Vec<GroupId>>,
}

fn trigrams_of(text: &str) -> Vec<Trigram> {
    let chars: Vec<char> = text.chars().collect();
    let mut grams: Vec<Trigram> = chars.windows(3).map(|w| [w[0], w[1], w[2]]).collect();
    grams.sort_unstable();
    grams.dedup();
    grams
}

impl FilterIndexes {
    /// Adds a group loaded in bulk; [`FilterIndexes::sort`] must follow the last one.
    pub(super) fn push(&mut self, group: &Group) {
        if !group.is_valid {
            self.tombstones
                .entry(group.parent_id)
                .or_default()
                .push(group.id);
            self.tombstone_count += 1;
        }
        self.by_update.push((group.upd_at, group.id));
        for gram in trigrams_of(&group.name.to_lowercase()) {
            self.trigrams.entry(gram).or_default().push(group.id);
        }
    }

    /// Orders the lists after a bulk load, and gives back their spare capacity.
    pub(super) fn sort(&mut self) {
        for list in self.tombstones.values_mut() {
            list.sort_unstable();
            list.shrink_to_fit();
        }
        self.by_update.sort_unstable();
        self.by_update.shrink_to_fit();
        for list in self.trigrams.values_mut() {
            list.sort_unstable();
            list.shrink_to_fit();
        }
    }

    /// Replaces a group's row (`old` is `None` for a new group), touching only the lists whose
    /// key changed: a delete or a move leaves the name's trigrams alone.
    pub(super) fn replace(&mut self, old: Option<&Group>, new: &Group) {
        let tombstone = |g: &Group| (!g.is_valid).then_some(g.parent_id);
        if old.and_then(tombstone) != tombstone(new) {
            if let Some(parent) = old.and_then(tombstone)
                && let Some(list) = self.tombstones.get_mut(&parent)
            {
                remove_sorted(list, &new.id);
                self.tombstone_count -= 1;
                if list.is_empty() {
                    self.tombstones.remove(&parent);
                }
            }
            if let Some(parent) = tombstone(new) {
                insert_sorted(self.tombstones.entry(parent).or_default(), new.id);
                self.tombstone_count += 1;
            }
        }
        if old.map(|g| g.upd_at) != Some(new.upd_at) {
            if let Some(old) = old {
                remove_sorted(&mut self.by_update, &(old.upd_at, old.id));
            }
            insert_sorted(&mut self.by_update, (new.upd_at, new.id));
        }
        let name = new.name.to_lowercase();
        let old_name = old.map(|g| g.name.to_lowercase());
        if old_name.as_ref() != Some(&name) {
            for gram in old_name.as_deref().map(trigrams_of).unwrap_or_default() {
                if let Some(list) = self.trigrams.get_mut(&gram) {
                    remove_sorted(list, &new.id);
                    if list.is_empty() {
                        self.trigrams.remove(&gram);
                    }
                }
            }
            for gram in trigrams_of(&name) {
                insert_sorted(self.trigrams.entry(gram).or_default(), new.id);
            }
        }
    }

    /// The tombstones directly under `parent`.
    pub(super) fn tombstones_under(&self, parent: GroupId) -> &[GroupId] {
        self.tombstones.get(&parent).map_or(&[], Vec::as_slice)
    }

    /// Every tombstone, in no particular order.
    pub(super) fn all_tombstones(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.tombstones.values().flatten().copied()
    }

    pub(super) fn tombstone_count(&self) -> usize {
        self.tombstone_count
    }

    /// Every group (valid or not) changed at or after `since`.
    pub(super) fn updated_since(&self, since: i64) -> &[(i64, GroupId)] {
        let at = self
            .by_update
            .partition_point(|(upd_at, _)| *upd_at < since);
        &self.by_update[at..]
    }

    /// Groups (valid or not) that may contain `keyword` (lower-cased) in their lower-cased name:
    /// a superset of the matches, the shortest list of one of its trigrams. `None` for a keyword
    /// too short to have one.
    pub(super) fn keyword_candidates(&self, keyword: &str) -> Option<&[GroupId]> {
        let grams = trigrams_of(keyword);
        if grams.is_empty() {
            return None;
        }
        let shortest = grams
            .iter()
            .map(|gram| self.trigrams.get(gram).map_or(&[][..], Vec::as_slice))
            .min_by_key(|list| list.len())
            .unwrap_or(&[]);
        Some(shortest)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use crate::domain::directory::{Directory, DirectoryBuilder, Group, GroupFilter};
    use crate::domain::values::{GroupId, GroupName, Page, ROOT_GROUP, RemoteId, Source};

    const TOP: i64 = 40;
    const PER_TOP: i64 = 1000;

    /// 40 top-level groups of 999 children each; every tenth child a tombstone; a few named
    /// "Needle"; `upd_at` grows with the id.
    fn large() -> Directory {
        let mut builder = DirectoryBuilder::new("Big".into(), 10, 1, (TOP * PER_TOP) as usize, 0);
        for id in 1..=TOP * PER_TOP {
            let top = (id - 1) / PER_TOP + 1;
            let child = id % PER_TOP != 1;
            let name = if id % 9_973 == 0 {
                format!("Needle {id}")
            } else {
                format!("Group {id}")
            };
            builder.add_group(Group {
                id: GroupId::new(id),
                parent_id: if child {
                    GroupId::new((top - 1) * PER_TOP + 1)
                } else {
                    ROOT_GROUP
                },
                source: Source::Api,
                remote_id: RemoteId::parse(&format!("remote-{id}")).expect("a remote id"),
                name: GroupName::parse(&name).expect("a name"),
                order: id % 7,
                is_valid: !(child && id % 10 == 0),
                created_at: 1,
                upd_at: id,
            });
        }
        builder.finish()
    }

    /// Every match of `filter` by a scan of every row, in the contract's order.
    fn scanned(d: &Directory, filter: &GroupFilter) -> Vec<GroupId> {
        let rows: HashMap<GroupId, &Group> = d.all_groups().map(|g| (g.id, g)).collect();
        let depth = |mut id: GroupId| {
            let mut depth = 0;
            while id != ROOT_GROUP {
                depth += 1;
                id = rows[&id].parent_id;
            }
            depth
        };
        let mut found: Vec<&Group> = rows
            .values()
            .copied()
            .filter(|g| {
                (filter.include_invalid || g.is_valid)
                    && filter.updated_since.is_none_or(|t| g.upd_at >= t)
                    && filter
                        .keyword
                        .as_ref()
                        .is_none_or(|k| g.name.to_lowercase().contains(k.as_str()))
            })
            .collect();
        found.sort_by_key(|g| (depth(g.id), -g.order, g.id));
        found.into_iter().map(|g| g.id).collect()
    }

    fn listed(d: &Directory, filter: &GroupFilter, page: Page) -> (Vec<GroupId>, u64) {
        let (rows, total) = d.list_groups(filter, page).expect("a listing");
        (rows.into_iter().map(|g| g.id).collect(), total)
    }

    #[test]
    fn filtered_listings_of_a_large_directory_match_a_full_scan() {
        let d = large();
        let filters = [
            GroupFilter {
                keyword: Some("needle".into()),
                ..GroupFilter::default()
            },
            GroupFilter {
                keyword: Some("up 9999".into()),
                include_invalid: true,
                ..GroupFilter::default()
            },
            GroupFilter {
                updated_since: Some(TOP * PER_TOP - 30),
                ..GroupFilter::default()
            },
            GroupFilter {
                updated_since: Some(TOP * PER_TOP - 30),
                include_invalid: true,
                ..GroupFilter::default()
            },
            GroupFilter {
                include_invalid: true,
                ..GroupFilter::default()
            },
        ];
        for filter in &filters {
            let expected = scanned(&d, filter);
            assert!(!expected.is_empty(), "{filter:?} matches something");
            let last = expected.len().div_ceil(7) as u64;
            for number in [1, 2, last, last + 1] {
                let page = Page::new(number, 7).expect("a page");
                let wanted: Vec<GroupId> = page.slice(&expected).to_vec();
                assert_eq!(
                    listed(&d, filter, page),
                    (wanted, expected.len() as u64),
                    "page {number} of {filter:?}"
                );
            }
        }
        assert_eq!(d.violations(2), Vec::<String>::new());
    }

    /// What a listing examines grows with what its index offers, not with the directory,
    /// except where no index applies.
    #[test]
    fn a_listings_work_is_what_its_smallest_index_offers() {
        let d = large();
        let all = (TOP * PER_TOP) as usize;
        let work = |filter: GroupFilter| d.listing_work(&filter);
        // Ordered vectors answer these whole.
        assert_eq!(work(GroupFilter::default()), 0);
        assert_eq!(
            work(GroupFilter {
                include_invalid: true,
                ..GroupFilter::default()
            }),
            0
        );
        assert_eq!(
            work(GroupFilter {
                parent: Some(GroupId::new(1)),
                ..GroupFilter::default()
            }),
            0
        );
        // An index: the few "Needle" groups, the 31 changed last, 3 remote ids asked.
        assert_eq!(
            work(GroupFilter {
                keyword: Some("needle".into()),
                ..GroupFilter::default()
            }),
            4
        );
        assert_eq!(
            work(GroupFilter {
                updated_since: Some(TOP * PER_TOP - 30),
                keyword: Some("g".into()),
                ..GroupFilter::default()
            }),
            31
        );
        assert_eq!(
            work(GroupFilter {
                remote_ids: Some(vec![
                    "remote-5".into(),
                    "remote-6".into(),
                    "remote-7".into()
                ]),
                ..GroupFilter::default()
            }),
            3
        );
        // No index: a keyword of one or two letters, everything changed since long ago, a
        // subtree.
        for filter in [
            GroupFilter {
                keyword: Some("g".into()),
                ..GroupFilter::default()
            },
            GroupFilter {
                updated_since: Some(0),
                ..GroupFilter::default()
            },
            GroupFilter {
                parent: Some(GroupId::new(1)),
                recursive: true,
                ..GroupFilter::default()
            },
        ] {
            assert_eq!(work(filter.clone()), all, "{filter:?}");
        }
    }
}
