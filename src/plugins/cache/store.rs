//! The sharded store of one cache type (success or denial): 256 shards, each a
//! read-write lock over a map from key to slot and a vector of items, so a
//! random victim is picked in O(1) when a full shard takes a new key (CoreDNS
//! evicts an arbitrary map entry: random, not LRU). The shard of a key is its
//! low 8 bits, as in CoreDNS; lookups take one shard's read lock, never a
//! global one.
//!
//! CoreDNS: `plugin/pkg/cache/cache.go`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::item::Item;

/// Number of shards (CoreDNS `shardSize`).
pub const SHARDS: usize = 256;

/// Hashes the already-hashed 64-bit key: keys of one shard share their low 8
/// bits, so they are mixed before the map uses them.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let k = self.0 >> 8;
        (k ^ (k >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = k;
    }
}

type Map = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

#[derive(Default)]
struct Inner {
    map: Map,
    items: Vec<Item>,
}

/// One shard, aligned so shards' locks don't share cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Shard(RwLock<Inner>);

/// A sharded store with random eviction.
pub struct Store {
    shards: Box<[Shard]>,
    per_shard: usize,
    len: AtomicUsize,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("per_shard", &self.per_shard)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// What an insert did.
#[derive(Debug)]
pub struct Inserted {
    /// A different entry was evicted to make room.
    pub evicted: bool,
}

impl Store {
    /// A store of 256 shards of `per_shard` entries.
    pub fn new(per_shard: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            per_shard: per_shard.max(1),
            len: AtomicUsize::new(0),
        }
    }

    /// Effective capacity.
    pub fn capacity(&self) -> usize {
        self.per_shard * SHARDS
    }

    fn shard(&self, key: u64) -> &RwLock<Inner> {
        &self.shards[(key as usize) & (SHARDS - 1)].0
    }

    /// Runs `f` on the item under `key` (shard read lock held).
    #[inline]
    pub fn get<R>(&self, key: u64, f: impl FnOnce(&Item) -> R) -> Option<R> {
        let s = self
            .shard(key)
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = *s.map.get(&key)?;
        s.items.get(slot as usize).map(f)
    }

    /// Adds or replaces the item under `item.key`. `merge` sees the new item
    /// and the one it replaces (under the shard's write lock). When the shard
    /// is full and the key is new, a random entry is evicted first.
    pub fn insert(&self, mut item: Item, merge: impl FnOnce(&mut Item, Option<Item>)) -> Inserted {
        let key = item.key;
        let mut s = self
            .shard(key)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&slot) = s.map.get(&key) {
            let old = std::mem::replace(&mut s.items[slot as usize], item);
            merge(&mut s.items[slot as usize], Some(old));
            return Inserted { evicted: false };
        }
        let mut evicted = false;
        if s.items.len() >= self.per_shard {
            let victim = fastrand::usize(..s.items.len());
            Self::remove_slot(&mut s, victim);
            evicted = true;
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        merge(&mut item, None);
        if s.items.len() == s.items.capacity() {
            // Grow in steps, never past the shard's capacity.
            let want = (s.items.capacity() * 2).clamp(4, self.per_shard);
            let extra = want.saturating_sub(s.items.len());
            s.items.reserve_exact(extra.max(1));
        }
        let slot = s.items.len() as u32;
        s.items.push(item);
        s.map.insert(key, slot);
        self.len.fetch_add(1, Ordering::Relaxed);
        Inserted { evicted }
    }

    fn remove_slot(s: &mut Inner, slot: usize) -> Item {
        let it = s.items.swap_remove(slot);
        s.map.remove(&it.key);
        if let Some(moved) = s.items.get(slot) {
            let k = moved.key;
            s.map.insert(k, slot as u32);
        }
        it
    }

    /// Removes the item under `key`.
    pub fn remove(&self, key: u64) -> Option<Item> {
        let mut s = self
            .shard(key)
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = *s.map.get(&key)?;
        let it = Self::remove_slot(&mut s, slot as usize);
        self.len.fetch_sub(1, Ordering::Relaxed);
        Some(it)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held by the store (items, their data, maps), for the memory bench.
    pub fn heap_bytes(&self) -> usize {
        let mut n = self.shards.len() * std::mem::size_of::<Shard>();
        for s in self.shards.iter() {
            let s =
                s.0.read()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            n += s.items.capacity() * std::mem::size_of::<Item>();
            n += s.items.iter().map(Item::heap_bytes).sum::<usize>();
            // hashbrown: (key, value) slots plus one control byte each.
            n += s.map.capacity() * (std::mem::size_of::<(u64, u32)>() + 1);
        }
        n
    }
}
