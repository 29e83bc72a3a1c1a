//! The order of the default group listing (every valid group by depth, `order` descending, id),
//! kept in chunks of a few hundred ids. As one vector, each create or move shifted every id
//! after the group's place: about 700 KB of memory per write in a directory of 100,000 groups,
//! paid while the team's next write waits. In chunks a write shifts one chunk and recounts the
//! chunk starts, and a page at any offset is still two binary searches away.
//!
//! The ids carry no key of their own: the caller passes the key of the id being placed and a
//! function giving any listed id's key (read from the directory's groups), so a listed id costs
//! eight bytes, as in the vector it replaces.

use std::ops::Range;

use crate::domain::values::GroupId;

/// A chunk is split in two when it reaches twice this many ids. (Tiny under test, so that the
/// property tests split, empty and drop chunks.)
const CHUNK: usize = if cfg!(test) { 3 } else { 512 };

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub(super) struct Listing {
    /// Non-empty runs of ids, in order.
    chunks: Vec<Vec<GroupId>>,
    /// How many ids come before each chunk.
    starts: Vec<usize>,
}

impl Listing {
    /// A listing of ids already in order.
    pub(super) fn from_sorted(ids: &[GroupId]) -> Listing {
        let mut listing = Listing {
            chunks: ids.chunks(CHUNK).map(<[GroupId]>::to_vec).collect(),
            starts: Vec::new(),
        };
        listing.recount(0);
        listing
    }

    pub(super) fn len(&self) -> usize {
        match (self.starts.last(), self.chunks.last()) {
            (Some(start), Some(chunk)) => start + chunk.len(),
            _ => 0,
        }
    }

    /// Every id, in order.
    pub(super) fn iter(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.chunks.iter().flatten().copied()
    }

    /// The ids at the positions `range` (which must lie within the listing), in order.
    pub(super) fn range(&self, range: Range<usize>) -> impl Iterator<Item = GroupId> + '_ {
        let first = self
            .starts
            .partition_point(|start| *start <= range.start)
            .saturating_sub(1);
        let skip = range.start - self.starts.get(first).copied().unwrap_or(0);
        self.chunks
            .get(first..)
            .unwrap_or_default()
            .iter()
            .flatten()
            .copied()
            .skip(skip)
            .take(range.len())
    }

    /// Places `id`, whose key is `key`; `key_of` gives the key of any listed id.
    pub(super) fn insert<K: Ord>(&mut self, id: GroupId, key: &K, key_of: impl Fn(GroupId) -> K) {
        let Some(at) = self.chunk_for(key, &key_of) else {
            self.chunks.push(vec![id]);
            self.recount(0);
            return;
        };
        let chunk = &mut self.chunks[at];
        let Err(place) = chunk.binary_search_by(|other| key_of(*other).cmp(key)) else {
            return;
        };
        chunk.insert(place, id);
        if chunk.len() >= 2 * CHUNK {
            let second_half = chunk.split_off(CHUNK);
            self.chunks.insert(at + 1, second_half);
        }
        self.recount(at);
    }

    /// Takes out the id whose key is `key`, if listed; `key_of` gives the key of any listed id.
    pub(super) fn remove<K: Ord>(&mut self, key: &K, key_of: impl Fn(GroupId) -> K) {
        let Some(at) = self.chunk_for(key, &key_of) else {
            return;
        };
        let chunk = &mut self.chunks[at];
        let Ok(place) = chunk.binary_search_by(|other| key_of(*other).cmp(key)) else {
            return;
        };
        chunk.remove(place);
        if chunk.is_empty() {
            self.chunks.remove(at);
        }
        self.recount(at);
    }

    /// The chunk that holds `key` or would take it: the first whose last key is not below it,
    /// else the last one. `None` while the listing is empty.
    fn chunk_for<K: Ord>(&self, key: &K, key_of: impl Fn(GroupId) -> K) -> Option<usize> {
        let after = self
            .chunks
            .partition_point(|chunk| chunk.last().is_some_and(|last| key_of(*last) < *key));
        let last = self.chunks.len().checked_sub(1)?;
        Some(after.min(last))
    }

    /// Recomputes the starts of the chunks from `from` on, after a change in chunk `from`.
    fn recount(&mut self, from: usize) {
        self.starts.truncate(from);
        let mut start = match (self.starts.last(), from.checked_sub(1)) {
            (Some(before), Some(previous)) => before + self.chunks[previous].len(),
            _ => 0,
        };
        for chunk in &self.chunks[from.min(self.chunks.len())..] {
            self.starts.push(start);
            start += chunk.len();
        }
    }
}

#[cfg(test)]
mod tests {
    //! The listing against the sorted vector it replaces, through random inserts, removals
    //! and page reads.

    use proptest::prelude::*;

    use super::*;

    fn id(n: i64) -> GroupId {
        GroupId::new(n)
    }

    /// Keys in the reverse order of the ids, so that the key function matters.
    fn key_of(id: GroupId) -> i64 {
        -id.get()
    }

    proptest! {
        #[test]
        fn a_listing_reads_as_the_sorted_vector(
            start in proptest::collection::vec(0i64..200, 0..40),
            steps in proptest::collection::vec((any::<bool>(), 0i64..200), 0..200),
            page in (0usize..50, 1usize..12),
        ) {
            let mut expected: Vec<GroupId> = start.iter().copied().map(id).collect();
            expected.sort_unstable_by_key(|g| key_of(*g));
            expected.dedup();
            let mut listing = Listing::from_sorted(&expected);
            for (insert, n) in steps {
                let g = id(n);
                let found = expected.binary_search_by_key(&key_of(g), |o| key_of(*o));
                if insert {
                    listing.insert(g, &key_of(g), key_of);
                    if let Err(at) = found {
                        expected.insert(at, g);
                    }
                } else {
                    listing.remove(&key_of(g), key_of);
                    if let Ok(at) = found {
                        expected.remove(at);
                    }
                }
                prop_assert_eq!(listing.len(), expected.len());
                prop_assert_eq!(listing.iter().collect::<Vec<_>>(), expected.clone());
                prop_assert!(listing.chunks.iter().all(|chunk| !chunk.is_empty()));
            }
            let (offset, count) = page;
            let start = offset.min(expected.len());
            let end = (start + count).min(expected.len());
            prop_assert_eq!(
                listing.range(start..end).collect::<Vec<_>>(),
                expected[start..end].to_vec()
            );
        }
    }
}
