//! What this process read from the database lately and may trust for a short while: the
//! records behind tokens and teams, which every call needs.
//!
//! Asking the database costs more than everything else a read does (on SQLite, a hand-off to the
//! driver's thread and back). Changes made through this process update or drop the entries they
//! affect at once; changes made by another process (a second server, the command line) are seen
//! once an entry is older than the configured time-to-live, except where the caller checks an
//! entry against the store's change stamp (tokens, see `auth`). Writes never rely on an entry: they
//! are committed against the database's own version (see `directories`).

use std::collections::HashMap;
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

    #[test]
    fn a_zero_time_to_live_keeps_nothing() {
        let recent = Recent::new(Duration::ZERO);
        recent.put(1, "a");
        assert_eq!(recent.get(&1), None);
    }
}
