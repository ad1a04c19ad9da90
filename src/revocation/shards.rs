//! A map in shards that are shared between snapshots: copying a snapshot copies 64 pointers, and
//! changing an entry copies only the shard it is in (when an older snapshot still shares it).
//! So applying a change costs a fraction of the set however large the set is, and a reader
//! holding an older snapshot is never disturbed.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

const SHARDS: usize = 64;

/// A hash map in [`SHARDS`] copy-on-write shards.
#[derive(Debug, Clone)]
pub(super) struct Sharded<K, V> {
    shards: Vec<Arc<HashMap<K, V, Fixed>>>,
    len: usize,
}

/// One hasher for every shard of every snapshot (the shard is chosen by the same hash), with a
/// key drawn at start so that nobody can choose keys that all land in one bucket. foldhash's
/// quality variant rather than SipHash: every request looks its certificate up here several
/// times, and the keys are short fixed-size values (issuer, serial; 128-bit ID digests), for which
/// SipHash cost more than the lookup itself.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Fixed;

impl BuildHasher for Fixed {
    type Hasher = foldhash::quality::FoldHasher<'static>;

    fn build_hasher(&self) -> Self::Hasher {
        use std::sync::OnceLock;
        static KEYS: OnceLock<foldhash::quality::SeedableRandomState> = OnceLock::new();
        KEYS.get_or_init(foldhash::quality::SeedableRandomState::random)
            .build_hasher()
    }
}

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Arc::new(HashMap::with_hasher(Fixed)))
                .collect(),
            len: 0,
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Sharded<K, V> {
    fn shard_of(key: &K) -> usize {
        // The high bits: the map inside the shard uses the low ones.
        usize::try_from(Fixed.hash_one(key) >> 58).unwrap_or(0) % SHARDS
    }

    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.shards[Self::shard_of(key)].get(key)
    }

    pub(super) fn contains(&self, key: &K) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn insert(&mut self, key: K, value: V) {
        let shard = Arc::make_mut(&mut self.shards[Self::shard_of(&key)]);
        if shard.insert(key, value).is_none() {
            self.len += 1;
        }
    }

    pub(super) fn remove(&mut self, key: &K) {
        let index = Self::shard_of(key);
        if self.shards[index].contains_key(key) {
            Arc::make_mut(&mut self.shards[index]).remove(key);
            self.len -= 1;
        }
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        for shard in &mut self.shards {
            if shard.iter().any(|(key, value)| !keep(key, value)) {
                let shard = Arc::make_mut(shard);
                let before = shard.len();
                shard.retain(|key, value| keep(key, value));
                self.len -= before - shard.len();
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

impl<K: Hash + Eq, V: PartialEq> PartialEq for Sharded<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self
                .shards
                .iter()
                .zip(&other.shards)
                .all(|(mine, theirs)| mine == theirs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_copies_one_shard_and_leaves_older_copies_alone() {
        let mut map: Sharded<u64, u64> = Sharded::default();
        for key in 0..10_000 {
            map.insert(key, key);
        }
        let older = map.clone();
        map.insert(7, 70);
        map.remove(&8);
        assert_eq!(older.get(&7), Some(&7));
        assert_eq!(older.get(&8), Some(&8));
        assert_eq!(map.get(&7), Some(&70));
        assert_eq!(map.get(&8), None);
        let shared = map
            .shards
            .iter()
            .zip(&older.shards)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert!(shared >= SHARDS - 2, "only the touched shards were copied");
        assert_eq!(map.len(), 9_999);
        map.retain(|key, _| *key < 100);
        assert_eq!(map.len(), 99);
    }
}
