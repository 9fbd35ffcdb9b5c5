//! A Bloom filter of the keys a tree has held, so that a duplicate check
//! for a key never seen before does not read sled.
//!
//! Nearly every chat-ended webhook brings a new webhook id and a new chat,
//! and looking either up in sled reads leaf pages that are seldom in the
//! cache. The filter rules out most of them from memory. It
//! has no false negatives: every key written to the tree is added first, and
//! the filter is built from the tree when the store opens. Deleted keys stay
//! in it and only cost a lookup in sled.
//!
//! The filter grows in layers: when a layer contains its planned number of
//! keys, a new one with twice the room is added, so the false-positive rate
//! stays near 1 % whatever the number of keys.

use std::hash::{BuildHasher, Hasher};

/// Bits per key; with [`HASHES`] hash functions this gives about 1 % false positives.
const BITS_PER_KEY: usize = 10;
const HASHES: u64 = 7;
const FIRST_LAYER_KEYS: usize = 1 << 16;

struct Layer {
    bits: Vec<u64>,
    capacity: usize,
    keys: usize,
}

impl Layer {
    fn new(capacity: usize) -> Self {
        let words = (capacity * BITS_PER_KEY).div_ceil(64);
        Self {
            bits: vec![0; words],
            capacity,
            keys: 0,
        }
    }

    fn insert(&mut self, hash: u64) {
        let bit_count = self.bits.len() * 64;
        for position in positions(hash, bit_count) {
            self.bits[position / 64] |= 1 << (position % 64);
        }
        self.keys += 1;
    }

    fn may_contain(&self, hash: u64) -> bool {
        positions(hash, self.bits.len() * 64).all(|position| self.bits[position / 64] & (1 << (position % 64)) != 0)
    }
}

/// Returns the bit positions of a key in a layer of `bit_count` bits, by
/// double hashing of its one 64-bit hash.
fn positions(hash: u64, bit_count: usize) -> impl Iterator<Item = usize> {
    let step = (hash >> 32) | 1;
    (0..HASHES).map(move |i| (hash.wrapping_add(i.wrapping_mul(step)) % bit_count as u64) as usize)
}

/// The set of keys a tree has held, with about 1 % false positives.
pub(super) struct SeenFilter {
    layers: Vec<Layer>,
    hasher: std::hash::RandomState,
}

impl Default for SeenFilter {
    fn default() -> Self {
        Self {
            layers: vec![Layer::new(FIRST_LAYER_KEYS)],
            hasher: std::hash::RandomState::new(),
        }
    }
}

impl SeenFilter {
    fn hash(&self, key: &[u8]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key);
        hasher.finish()
    }

    pub fn insert(&mut self, key: &[u8]) {
        let hash = self.hash(key);
        let last = self.layers.last().expect("at least one layer");
        if last.keys >= last.capacity {
            let capacity = last.capacity * 2;
            self.layers.push(Layer::new(capacity));
        }
        self.layers.last_mut().expect("at least one layer").insert(hash);
    }

    /// Returns false only for a key that was never inserted.
    pub fn may_contain(&self, key: &[u8]) -> bool {
        let hash = self.hash(key);
        self.layers.iter().any(|layer| layer.may_contain(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_keys_are_always_found() {
        let mut filter = SeenFilter::default();
        let keys: Vec<String> = (0..300_000).map(|n| format!("msg_{n}")).collect();
        for key in &keys {
            filter.insert(key.as_bytes());
        }
        assert!(filter.layers.len() > 1, "the filter grew beyond its first layer");
        let missing = keys.iter().filter(|key| !filter.may_contain(key.as_bytes())).count();
        assert_eq!(missing, 0);
    }

    #[test]
    fn few_false_positives() {
        let mut filter = SeenFilter::default();
        for n in 0..200_000 {
            filter.insert(format!("chat-{n}").as_bytes());
        }
        let false_positives = (0..100_000)
            .filter(|n| filter.may_contain(format!("other-{n}").as_bytes()))
            .count();
        // About 1 % per layer, and a key is looked up in each of the 3 layers.
        assert!(false_positives < 5_000, "{false_positives} false positives in 100 000");
    }
}
