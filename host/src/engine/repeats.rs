//! Which keys of a source repeat, found in the one read, so that the send pass lets the
//! last row of each win.
//!
//! Every key's 128-bit hash is kept while the source is read: no two distinct keys share
//! one in practice (a billion keys collide with a chance near 10^-21), and it costs the
//! same for any key length. They are kept in 256 plain vectors by the hash's first byte,
//! not in a hash set: 16 bytes a key and some slack (about 22 bytes on average, 220 MB for
//! 10,000,000 keys) where a set took 17 bytes a slot at a power-of-two slot count, twice
//! that while it grew. At the end of the read each vector is sorted and equal neighbours
//! are the repeats: only those are kept, with how many rows each has.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const BUCKETS: usize = 256;

/// The keys read so far.
pub struct KeysSeen {
    buckets: Vec<Vec<u128>>,
}

impl Default for KeysSeen {
    fn default() -> Self {
        KeysSeen {
            buckets: vec![Vec::new(); BUCKETS],
        }
    }
}

/// A key as a [`KeySet`] holds it.
pub fn hash(key: &str) -> u128 {
    xxhash_rust::xxh3::xxh3_128(key.as_bytes())
}

impl KeysSeen {
    pub fn add(&mut self, key: &str) {
        let hash = hash(key);
        self.buckets[(hash >> 120) as usize].push(hash);
    }

    /// The keys read more than once, with their row counts.
    #[cfg(test)]
    pub fn repeats(self) -> Repeats {
        self.finish(false).0
    }

    /// The repeats, and every key read when `keep` (a mirror run asks which keys the
    /// source no longer has): the sorted hashes, 16 bytes a key.
    pub fn finish(mut self, keep: bool) -> (Repeats, Option<KeySet>) {
        let mut rows_left = HashMap::default();
        for bucket in &mut self.buckets {
            bucket.sort_unstable();
            let mut at = 0;
            while at < bucket.len() {
                let run = bucket[at..]
                    .iter()
                    .take_while(|&&h| h == bucket[at])
                    .count();
                if run > 1 {
                    rows_left.insert(bucket[at], run as u32);
                }
                at += run;
            }
        }
        let set = keep.then_some(KeySet {
            buckets: self.buckets,
        });
        (Repeats { rows_left }, set)
    }
}

/// The keys a source read held.
pub struct KeySet {
    /// Sorted, by the hash's first byte.
    buckets: Vec<Vec<u128>>,
}

impl KeySet {
    pub fn contains(&self, key: &str) -> bool {
        self.contains_hash(hash(key))
    }

    /// Whether the set holds the key whose [`hash`] is `hash`.
    pub fn contains_hash(&self, hash: u128) -> bool {
        self.buckets[(hash >> 120) as usize]
            .binary_search(&hash)
            .is_ok()
    }
}

/// The repeated keys of a source and how many of their rows the send pass has still to
/// meet: the row that meets the last one is the row that counts.
pub struct Repeats {
    rows_left: HashMap<u128, u32, BuildHasherDefault<AsIs>>,
}

impl Repeats {
    /// Called once per row, in the order rows were read: whether this row is the last of
    /// its key (always, for a key read once).
    pub fn is_last(&mut self, key: &str) -> bool {
        if self.rows_left.is_empty() {
            return true;
        }
        match self.rows_left.get_mut(&hash(key)) {
            None => true,
            Some(left) => {
                *left = left.saturating_sub(1);
                *left == 0
            }
        }
    }
}

/// Hashes a key hash by taking its low half as it is: it is already uniform.
#[derive(Default)]
pub struct AsIs(u64);

impl Hasher for AsIs {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_the_last_row_of_a_repeated_key_counts() {
        let rows = ["a", "b", "a", "c", "a", "b"];
        let mut seen = KeysSeen::default();
        rows.iter().for_each(|k| seen.add(k));
        let mut repeats = seen.repeats();
        let last: Vec<bool> = rows.iter().map(|k| repeats.is_last(k)).collect();
        assert_eq!(last, [false, false, false, true, true, true]);
    }

    #[test]
    fn the_set_of_keys_read_holds_each_key_read_and_no_other() {
        let mut seen = KeysSeen::default();
        ["a", "b", "a"].iter().for_each(|k| seen.add(k));
        let (_, set) = seen.finish(true);
        let set = set.unwrap();
        assert!(set.contains("a") && set.contains("b"));
        assert!(!set.contains("c") && !set.contains(""));
    }

    proptest! {
        /// The row marked last for each key is exactly its last occurrence, whatever the
        /// keys and their order.
        #[test]
        fn the_last_occurrence_and_only_it_is_last(
            rows in proptest::collection::vec("[a-e]{0,2}", 0..60)
        ) {
            let mut seen = KeysSeen::default();
            rows.iter().for_each(|k| seen.add(k));
            let mut repeats = seen.repeats();
            for (i, key) in rows.iter().enumerate() {
                let expected = !rows[i + 1..].contains(key);
                prop_assert_eq!(repeats.is_last(key), expected, "row {} ({:?})", i, key);
            }
        }
    }
}
