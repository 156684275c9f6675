//! A small read-mostly map whose entries expire: what authentication consults on every request.
//!
//! Written here rather than taken from a cache crate because the hot path is one lookup per
//! request on a handful of keys, and the benchmark showed a general-purpose cache's per-read
//! bookkeeping (moka records every read for its eviction policy) costing more than the rest of
//! `me`. Reads take a shared lock and compare one instant; eviction is simply dropping expired
//! entries when the map is full.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::RwLock,
    time::{Duration, Instant},
};

pub struct TtlMap<K, V> {
    ttl: Duration,
    capacity: usize,
    entries: RwLock<HashMap<K, (V, Instant)>>,
}

impl<K: Hash + Eq, V: Clone> TtlMap<K, V> {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The value, if it was inserted less than the TTL ago.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(value, _)| value.clone())
    }

    pub fn insert(&self, key: K, value: V) {
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, Instant::now()));
    }

    /// Inserts `key` unless a live entry holds it; whether this call inserted it (of many
    /// callers at once, exactly one claims a key).
    pub fn claim(&self, key: K, value: V) -> bool {
        {
            let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
            if entries
                .get(&key)
                .is_some_and(|(_, at)| at.elapsed() < self.ttl)
            {
                return false;
            }
            if entries.len() < self.capacity {
                entries.insert(key, (value, Instant::now()));
                return true;
            }
        }
        self.insert(key, value);
        true
    }

    pub fn invalidate(&self, key: &K) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    pub fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_many_claims_a_key() {
        let map = std::sync::Arc::new(TtlMap::new(Duration::from_secs(60), 10));
        let claimed: usize = (0..8)
            .map(|_| {
                let map = map.clone();
                std::thread::spawn(move || map.claim("job", ()))
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| usize::from(t.join().unwrap_or(false)))
            .sum();
        assert_eq!(claimed, 1);
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let map = TtlMap::new(Duration::from_millis(30), 10);
        map.insert("k", 1);
        assert_eq!(map.get(&"k"), Some(1));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(map.get(&"k"), None);
    }

    #[test]
    fn invalidation_and_clearing_remove_entries() {
        let map = TtlMap::new(Duration::from_secs(60), 10);
        map.insert("a", 1);
        map.insert("b", 2);
        map.invalidate(&"a");
        assert_eq!(map.get(&"a"), None);
        assert_eq!(map.get(&"b"), Some(2));
        map.clear();
        assert_eq!(map.get(&"b"), None);
    }

    #[test]
    fn a_full_map_never_grows_past_its_capacity() {
        let map = TtlMap::new(Duration::from_secs(60), 3);
        for i in 0..10 {
            map.insert(i, i);
            assert!(map.entries.read().map(|e| e.len()).unwrap_or(0) <= 3);
        }
        assert_eq!(map.get(&9), Some(9), "the newest entry is always kept");
    }
}
