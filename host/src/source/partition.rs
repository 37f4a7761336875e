//! One share of a sync's keys: a sync with `partitions = N` is run as N partitions, each
//! claimed, diffed and sent on its own (by one worker of a pool, or by hand with
//! `sluice run --partition I/N`). A key's partition is a stable hash of the key, the same
//! on every machine and in every version.

use std::fmt;
use std::str::FromStr;

/// Partition `index` of `count` (0-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    pub index: u32,
    pub count: u32,
}

impl Partition {
    /// Whether `key` belongs to this partition.
    pub fn holds(&self, key: &str) -> bool {
        partition_of(key, self.count) == self.index
    }

    /// The partition that reports the source's invalid rows: they have no key, and one
    /// partition must report them, once.
    pub fn reports_invalid_rows(&self) -> bool {
        self.index == 0
    }
}

/// The partition of `key` among `count`: its [`key_hash`] modulo `count`.
pub fn partition_of(key: &str, count: u32) -> u32 {
    (key_hash(key) % i64::from(count.max(1))) as u32
}

/// XXH3-64 of the key's bytes, less its lowest bit: a non-negative 64-bit integer, so a
/// database can keep it in a `bigint` and find a partition's keys with `%` alone.
pub fn key_hash(key: &str) -> i64 {
    (xxhash_rust::xxh3::xxh3_64(key.as_bytes()) >> 1) as i64
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for Partition {
    type Err = String;

    /// `I/N`, with `0 <= I < N <= 4096`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("`{text}` is not a partition: expected I/N, like 3/8 (0 <= I < N)");
        let (index, count) = text.split_once('/').ok_or_else(bad)?;
        let index: u32 = index.trim().parse().map_err(|_| bad())?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count || count > MAX_PARTITIONS {
            return Err(bad());
        }
        Ok(Partition { index, count })
    }
}

/// The most partitions a sync may have.
pub const MAX_PARTITIONS: u32 = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_partition_is_written_and_read_as_i_of_n() {
        assert_eq!(
            "3/8".parse::<Partition>().unwrap(),
            Partition { index: 3, count: 8 }
        );
        assert_eq!(Partition { index: 0, count: 1 }.to_string(), "0/1");
        for bad in ["8/8", "1/0", "-1/4", "3", "a/b", "0/5000"] {
            assert!(bad.parse::<Partition>().is_err(), "{bad}");
        }
    }

    /// Pinned: a key's partition may never change between versions, or a pool of mixed
    /// versions would send a key from two partitions.
    #[test]
    fn a_keys_partition_is_stable() {
        let now = [
            partition_of("a", 8),
            partition_of("c0001", 8),
            partition_of("acct-42", 1000),
        ];
        assert_eq!(now, [7, 7, 567]);
    }

    proptest! {
        #[test]
        fn every_key_is_in_exactly_one_partition(key in ".*", count in 1u32..64) {
            let holding = (0..count)
                .filter(|&index| Partition { index, count }.holds(&key))
                .count();
            prop_assert_eq!(holding, 1);
        }
    }
}
