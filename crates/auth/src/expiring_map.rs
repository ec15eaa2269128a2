//! A bounded, sharded map whose entries expire: the verified-token cache and
//! the assertion replay cache. Sharding keeps writers (a token seen for the
//! first time) from stalling readers on other shards; 16 shards are plenty
//! for the core counts we run on.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

const SHARDS: usize = 16;

struct Entry<V> {
    value: V,
    /// Unix seconds from which the entry is dead.
    expires_at: i64,
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup<V> {
    Live(V),
    Expired,
    Absent,
}

/// Why [`ExpiringMap::insert_new`] refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InsertRefused {
    /// A live entry already has this key.
    Present,
    /// The shard is full of live entries.
    Full,
}

type Shard<V> = HashMap<String, Entry<V>>;

pub(crate) struct ExpiringMap<V> {
    shards: Vec<RwLock<Shard<V>>>,
    shard_capacity: usize,
    /// Keyed randomly per process so no one can aim every key at one shard.
    shard_hasher: RandomState,
}

impl<V: Clone> ExpiringMap<V> {
    /// A map holding at most about `capacity` entries.
    pub(crate) fn new(capacity: usize) -> Self {
        ExpiringMap::with_shards(capacity, SHARDS)
    }

    fn with_shards(capacity: usize, shards: usize) -> Self {
        ExpiringMap {
            shards: (0..shards).map(|_| RwLock::new(HashMap::new())).collect(),
            shard_capacity: capacity.div_ceil(shards).max(1),
            shard_hasher: RandomState::new(),
        }
    }

    pub(crate) fn get(&self, key: &str, now: i64) -> Lookup<V> {
        match self.read(key).get(key) {
            Some(entry) if now < entry.expires_at => Lookup::Live(entry.value.clone()),
            Some(_) => Lookup::Expired,
            None => Lookup::Absent,
        }
    }

    /// Inserts or replaces. A full shard first drops dead entries, then, if
    /// still full, an arbitrary eighth of its live ones (HashMap order is
    /// random), so a flood of fresh keys costs one scan per eighth rather
    /// than one per insert.
    pub(crate) fn insert(&self, key: String, value: V, expires_at: i64, now: i64) {
        let mut shard = self.write(&key);
        if shard.len() >= self.shard_capacity && !shard.contains_key(&key) {
            shard.retain(|_, e| now < e.expires_at);
            if shard.len() >= self.shard_capacity {
                let keep = self.shard_capacity - self.shard_capacity.div_ceil(8);
                let victims: Vec<String> = shard.keys().take(shard.len() - keep).cloned().collect();
                for victim in victims {
                    shard.remove(&victim);
                }
            }
        }
        shard.insert(key, Entry { value, expires_at });
    }

    /// Inserts only if no live entry has `key`; never evicts a live entry.
    pub(crate) fn insert_new(
        &self,
        key: String,
        value: V,
        expires_at: i64,
        now: i64,
    ) -> Result<(), InsertRefused> {
        let mut shard = self.write(&key);
        if shard.get(&key).is_some_and(|e| now < e.expires_at) {
            return Err(InsertRefused::Present);
        }
        if shard.len() >= self.shard_capacity && !shard.contains_key(&key) {
            shard.retain(|_, e| now < e.expires_at);
            if shard.len() >= self.shard_capacity {
                return Err(InsertRefused::Full);
            }
        }
        shard.insert(key, Entry { value, expires_at });
        Ok(())
    }

    /// Drops every entry.
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            shard
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }

    fn shard(&self, key: &str) -> &RwLock<Shard<V>> {
        let index = (self.shard_hasher.hash_one(key) as usize) % self.shards.len();
        &self.shards[index]
    }

    // No code panics while holding a shard lock; if something ever did, the
    // map is still a valid cache, so poisoning is ignored.
    fn read(&self, key: &str) -> RwLockReadGuard<'_, Shard<V>> {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, key: &str) -> RwLockWriteGuard<'_, Shard<V>> {
        self.shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire() {
        let map = ExpiringMap::new(100);
        map.insert("a".into(), 1, 10, 0);
        assert_eq!(map.get("a", 9), Lookup::Live(1));
        assert_eq!(map.get("a", 10), Lookup::Expired);
        assert_eq!(map.get("b", 0), Lookup::Absent);
    }

    #[test]
    fn insert_stays_bounded() {
        let map = ExpiringMap::new(64);
        for i in 0..10_000 {
            map.insert(format!("k{i}"), i, 100, 0);
        }
        assert!(map.len() <= 64, "{}", map.len());
        // Dead entries go first (one shard, so every key competes).
        let map = ExpiringMap::with_shards(16, 1);
        for i in 0..16 {
            map.insert(format!("old{i}"), i, 5, 0);
        }
        for i in 0..16 {
            map.insert(format!("new{i}"), i, 100, 10);
        }
        assert!((0..16).all(|i| map.get(&format!("new{i}"), 10) == Lookup::Live(i)));
    }

    #[test]
    fn insert_new_refuses_live_duplicates_and_never_evicts() {
        let map = ExpiringMap::new(SHARDS);
        assert_eq!(map.insert_new("j".into(), (), 10, 0), Ok(()));
        assert_eq!(
            map.insert_new("j".into(), (), 10, 5),
            Err(InsertRefused::Present)
        );
        assert_eq!(map.insert_new("j".into(), (), 20, 10), Ok(()));
        let refused = (0..1000)
            .filter(|i| map.insert_new(format!("k{i}"), (), 100, 10) == Err(InsertRefused::Full))
            .count();
        assert!(refused > 0);
        assert_eq!(map.get("j", 10), Lookup::Live(()));
        // Once entries die, there is room again.
        assert_eq!(map.insert_new("late".into(), (), 300, 200), Ok(()));
    }
}
