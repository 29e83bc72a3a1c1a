//! What this process read from the database lately and may trust for a short while: the
//! records behind tokens and teams, which every call needs.
//!
//! Asking the database costs more than everything else a read does (on SQLite, a hand-off to the
//! driver's thread and back). Changes made through this process update or drop the entries they
//! affect at once; changes made by another process (a second server, the command line) are seen
//! once an entry is older than the configured time-to-live, except for the entries kept with
//! the store's change stamp ([`Recent::stamped`]: the records behind access and SCIM tokens),
//! which serve only while nothing was committed since they were read. Writes never rely on an
//! entry: they are committed against the database's own version (see `directories`).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most entries kept; beyond that the map is emptied, which only costs fresh reads.
const CAPACITY: usize = 100_000;

/// A time-limited map of recently read records.
pub(super) struct Recent<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Eq + Hash, V: Clone> Recent<K, V> {
    /// Entries live for `ttl`; zero turns the map off (every read goes to the database).
    pub(super) fn new(ttl: Duration) -> Self {
        Recent {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entry for `key` if it is younger than the time-to-live.
    pub(super) fn get(&self, key: &K) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    /// The entry for `key` if it is younger than the time-to-live at `now` (the clock is a
    /// parameter so that tests can move it).
    fn get_at(&self, key: &K, now: Instant) -> Option<V> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries();
        entries
            .get(key)
            .filter(|(_, read_at)| now.saturating_duration_since(*read_at) < self.ttl)
            .map(|(value, _)| value.clone())
    }

    /// Remember `value`, read from the database just now.
    pub(super) fn put(&self, key: K, value: V) {
        self.put_at(key, value, Instant::now());
    }

    /// Remember `value`, read from the database at `now`.
    fn put_at(&self, key: K, value: V, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key, (value, now));
    }

    /// Forget every entry for which `stale` holds (after a change made by this process).
    pub(super) fn forget(&self, stale: impl Fn(&V) -> bool) {
        if self.ttl.is_zero() {
            return;
        }
        self.entries().retain(|_, (value, _)| !stale(value));
    }
}

impl<K: Eq + Hash, V: Clone> Recent<K, (u64, V)> {
    /// The record for `key`: the one remembered if it was read at `stamp` (the store's change
    /// stamp, taken before this call: nothing was committed since, by any process), otherwise
    /// what `read` finds in the database, remembered with `stamp`. Without a stamp (the store
    /// cannot tell) it is always read. What is not found is not remembered.
    pub(super) async fn stamped<E>(
        &self,
        key: K,
        stamp: Option<u64>,
        read: impl Future<Output = Result<Option<V>, E>>,
    ) -> Result<Option<V>, E> {
        let remembered = stamp.and_then(|stamp| {
            self.get(&key)
                .filter(|(read_at, _)| *read_at == stamp)
                .map(|(_, value)| value)
        });
        if remembered.is_some() {
            return Ok(remembered);
        }
        let found = read.await?;
        if let (Some(stamp), Some(value)) = (stamp, &found) {
            self.put(key, (stamp, value.clone()));
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_and_can_be_forgotten() {
        let ttl = Duration::from_millis(50);
        let recent = Recent::new(ttl);
        let start = Instant::now();
        recent.put_at(1, "a", start);
        recent.put_at(2, "b", start);
        assert_eq!(recent.get_at(&1, start), Some("a"));
        recent.forget(|value| *value == "a");
        assert_eq!(recent.get_at(&1, start), None);
        let almost = start + ttl - Duration::from_millis(1);
        assert_eq!(recent.get_at(&2, almost), Some("b"));
        assert_eq!(recent.get_at(&2, start + ttl), None);
        // Put again later, it lives a full time-to-live from then.
        recent.put_at(2, "c", start + ttl);
        assert_eq!(recent.get_at(&2, almost + ttl), Some("c"));
    }

    #[test]
    fn the_real_clock_is_used_by_default() {
        let recent = Recent::new(Duration::from_secs(3600));
        recent.put(1, "a");
        assert_eq!(recent.get(&1), Some("a"));
    }

    #[tokio::test]
    async fn a_stamped_entry_serves_only_its_stamp() {
        let recent = Recent::new(Duration::from_secs(3600));
        let reads = std::cell::Cell::new(0);
        // Counts the reads that are awaited, not the ones only made.
        let read = |value: Option<&'static str>| {
            let reads = &reads;
            async move {
                reads.set(reads.get() + 1);
                Ok::<_, ()>(value)
            }
        };
        assert_eq!(
            recent.stamped(1, Some(7), read(Some("a"))).await,
            Ok(Some("a"))
        );
        // The same stamp: remembered, whatever the database would say now.
        assert_eq!(
            recent.stamped(1, Some(7), read(Some("b"))).await,
            Ok(Some("a"))
        );
        // A commit since: read again, and remembered with the new stamp.
        assert_eq!(
            recent.stamped(1, Some(8), read(Some("b"))).await,
            Ok(Some("b"))
        );
        assert_eq!(recent.stamped(1, Some(8), read(None)).await, Ok(Some("b")));
        // No stamp: always read; nothing found: nothing remembered.
        assert_eq!(recent.stamped(1, None, read(None)).await, Ok(None));
        assert_eq!(recent.stamped(2, Some(8), read(None)).await, Ok(None));
        assert_eq!(
            recent.stamped(2, Some(8), read(Some("c"))).await,
            Ok(Some("c"))
        );
        assert_eq!(reads.get(), 5);
    }

    #[test]
    fn a_zero_time_to_live_keeps_nothing() {
        let recent = Recent::new(Duration::ZERO);
        recent.put(1, "a");
        assert_eq!(recent.get(&1), None);
    }
}
