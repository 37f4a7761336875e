//! What the delivered log holds: a header per file naming the destination, and one
//! record per delivery. Records are postcard, written back to back inside frames.

use std::collections::HashMap;

use nohash_hasher::BuildNoHashHasher;
use serde::{Deserialize, Serialize};

use crate::ledger::PayloadHash;

/// Which destination a sync's delivered state is about: a hash of the connector, the
/// base URL and the settings. Change detection compares payloads against what *this*
/// destination confirmed, so state kept for another one must not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint(pub [u8; 16]);

impl Fingerprint {
    /// The fingerprint of the parts that name a destination, in order.
    pub fn of(parts: &[&str]) -> Fingerprint {
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for part in parts {
            // Length first, so that ("ab", "c") and ("a", "bc") differ.
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        Fingerprint(hasher.digest128().to_le_bytes())
    }
}

/// The first frame of every file of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The destination the records were delivered to; `None` in a segment written before
    /// any source run of this version named it.
    pub fingerprint: Option<Fingerprint>,
}

/// One delivery, borrowed from the bytes it was read from (or the record it is written
/// for): the log is read at the start of every run, so nothing is copied that a run does
/// not keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery<'a> {
    pub key: &'a str,
    /// The hash of the payload the destination confirmed.
    pub hash: [u8; 16],
    pub destination_id: Option<&'a str>,
    /// Sends since the key's previous record in the log (a snapshot holds the totals);
    /// reading adds them up.
    pub attempts: u32,
    pub at_ms: u64,
}

impl Delivery<'_> {
    pub fn payload_hash(&self) -> PayloadHash {
        PayloadHash(u128::from_le_bytes(self.hash))
    }
}

/// What the log holds for a key once every record of it is read, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub hash: PayloadHash,
    pub destination_id: Option<String>,
    /// Sends across all runs up to the last delivery.
    pub attempts: u32,
    pub at_ms: u64,
}

impl Delivered {
    /// Folds a later record of the same key into this one.
    pub fn then(&mut self, later: &Delivery<'_>) {
        self.hash = later.payload_hash();
        if let Some(id) = later.destination_id {
            self.destination_id = Some(id.to_string());
        }
        self.attempts = self.attempts.saturating_add(later.attempts);
        self.at_ms = later.at_ms;
    }

    pub fn first(record: &Delivery<'_>) -> Delivered {
        Delivered {
            hash: record.payload_hash(),
            destination_id: record.destination_id.map(str::to_string),
            attempts: record.attempts,
            at_ms: record.at_ms,
        }
    }

    pub fn as_delivery<'a>(&'a self, key: &'a str) -> Delivery<'a> {
        Delivery {
            key,
            hash: self.hash.0.to_le_bytes(),
            destination_id: self.destination_id.as_deref(),
            attempts: self.attempts,
            at_ms: self.at_ms,
        }
    }
}

/// Change detection's view of the log: for each key, the payload the destination last
/// confirmed, as 64-bit hashes of both. The snapshot's keys (each once) are a vector
/// sorted by key hash, exactly 16 bytes a key (10,000,000 keys: 160 MB), searched by
/// interpolation since the hashes are uniform (a few probes); the segments after it, newer
/// and usually small, are a hash map over it. Two keys whose 64-bit hashes collide only
/// cost a resend: a record is skipped only when its payload's hash also matches.
#[derive(Default)]
pub struct Index {
    base: Vec<(u64, u64)>,
    overlay: HashMap<u64, u64, BuildNoHashHasher<u64>>,
}

impl Index {
    /// An index whose snapshot holds at most about `keys` keys.
    pub fn with_capacity(keys: usize) -> Index {
        Index {
            base: Vec::with_capacity(keys),
            overlay: HashMap::default(),
        }
    }

    /// A record of the snapshot (each key once, in any order); [`Index::seal`] after the
    /// last.
    pub fn insert_base(&mut self, record: &Delivery<'_>) {
        self.base
            .push((key_hash(record.key), record.payload_hash().0 as u64));
    }

    /// Sorts the snapshot's keys for searching, and gives back what was reserved beyond
    /// them. A snapshot holds each key once; were one there twice, its later record wins
    /// (the sort is stable), as it would when read in order.
    pub fn seal(&mut self) {
        self.base.sort_by_key(|&(key, _)| key);
        self.base.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                kept.1 = later.1;
            }
            same
        });
        self.base.shrink_to_fit();
    }

    /// A record of a segment: newer than the snapshot and than earlier segments.
    pub fn insert(&mut self, record: &Delivery<'_>) {
        self.overlay
            .insert(key_hash(record.key), record.payload_hash().0 as u64);
    }

    /// Whether the destination confirmed `hash` for `key`; `None` when the log has no
    /// delivery of `key`.
    pub fn confirmed(&self, key: &str, hash: PayloadHash) -> Option<bool> {
        let key = key_hash(key);
        let confirmed = match self.overlay.get(&key) {
            Some(&confirmed) => confirmed,
            None => self.base_get(key)?,
        };
        Some(confirmed == hash.0 as u64)
    }

    /// Interpolation search over the sorted snapshot keys, ending in a binary search.
    fn base_get(&self, key: u64) -> Option<u64> {
        let base = &self.base;
        let (mut lo, mut hi) = (0usize, base.len());
        // Guess where `key` falls between the keys at `lo` and `hi - 1`; each probe
        // narrows the range, and a range that stops shrinking fast is binary-searched.
        for _ in 0..4 {
            if hi - lo < 16 {
                break;
            }
            let (first, last) = (base[lo].0, base[hi - 1].0);
            if key < first || key > last {
                return None;
            }
            let span = (last - first) as u128;
            let offset = if span == 0 {
                0
            } else {
                ((key - first) as u128 * (hi - lo - 1) as u128 / span) as usize
            };
            let at = lo + offset;
            match base[at].0.cmp(&key) {
                std::cmp::Ordering::Equal => return Some(base[at].1),
                std::cmp::Ordering::Less => lo = at + 1,
                std::cmp::Ordering::Greater => hi = at,
            }
        }
        base[lo..hi]
            .binary_search_by_key(&key, |&(k, _)| k)
            .ok()
            .map(|i| base[lo + i].1)
    }

    pub fn len(&self) -> usize {
        self.base.len() + self.overlay.len()
    }

    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.overlay.is_empty()
    }
}

fn key_hash(key: &str) -> u64 {
    // Another seed than the payload's hash, so a key and a payload of the same text do
    // not hash alike.
    xxhash_rust::xxh3::xxh3_64_with_seed(key.as_bytes(), 0x51_u64 << 56 | 0x1ce)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(key: &str, payload: &str, id: Option<&'static str>, attempts: u32) -> Vec<u8> {
        let record = Delivery {
            key,
            hash: PayloadHash::of(payload).0.to_le_bytes(),
            destination_id: id,
            attempts,
            at_ms: 5,
        };
        postcard::to_stdvec(&record).unwrap()
    }

    #[test]
    fn a_record_reads_back_borrowing_its_text() {
        let bytes = delivery("k1", "{}", Some("001"), 2);
        let (record, rest): (Delivery<'_>, _) = postcard::take_from_bytes(&bytes).unwrap();
        assert!(rest.is_empty());
        assert_eq!(record.key, "k1");
        assert_eq!(record.destination_id, Some("001"));
        assert_eq!(record.payload_hash(), PayloadHash::of("{}"));
        // A key, a 16-byte hash, an id and two small numbers: no padding.
        assert_eq!(bytes.len(), 1 + 2 + 16 + 1 + 1 + 3 + 1 + 1);
    }

    #[test]
    fn later_records_of_a_key_add_attempts_and_keep_the_last_known_id() {
        let first = delivery("k", "v1", Some("001"), 2);
        let later = delivery("k", "v2", None, 3);
        let first: Delivery<'_> = postcard::from_bytes(&first).unwrap();
        let later: Delivery<'_> = postcard::from_bytes(&later).unwrap();
        let mut state = Delivered::first(&first);
        state.then(&later);
        assert_eq!(
            state,
            Delivered {
                hash: PayloadHash::of("v2"),
                destination_id: Some("001".into()),
                attempts: 5,
                at_ms: 5,
            }
        );
    }

    #[test]
    fn the_index_confirms_only_the_payload_last_delivered() {
        let mut index = Index::default();
        for bytes in [delivery("k", "v1", None, 1), delivery("k", "v2", None, 1)] {
            index.insert(&postcard::from_bytes(&bytes).unwrap());
        }
        assert_eq!(index.confirmed("k", PayloadHash::of("v2")), Some(true));
        assert_eq!(index.confirmed("k", PayloadHash::of("v1")), Some(false));
        assert_eq!(index.confirmed("other", PayloadHash::of("v2")), None);
        assert_eq!(index.len(), 1);
    }

    proptest::proptest! {
        /// Whatever keys the snapshot and the segments hold, the index answers as a plain
        /// map of the same records would, newest record first.
        #[test]
        fn the_index_answers_like_a_map(
            base in proptest::collection::vec(("[a-z]{1,6}", "[0-9]{1,3}"), 0..200),
            later in proptest::collection::vec(("[a-z]{1,6}", "[0-9]{1,3}"), 0..40),
            probes in proptest::collection::vec("[a-z]{1,6}", 0..40),
        ) {
            let encoded = |key: &str, payload: &str| delivery(key, payload, None, 1);
            let mut index = Index::with_capacity(base.len());
            let mut expected = std::collections::HashMap::new();
            for (key, payload) in &base {
                // A key given twice: the later record wins, as in a read in order.
                index.insert_base(&postcard::from_bytes(&encoded(key, payload)).unwrap());
                expected.insert(key.clone(), payload.clone());
            }
            index.seal();
            for (key, payload) in &later {
                index.insert(&postcard::from_bytes(&encoded(key, payload)).unwrap());
                expected.insert(key.clone(), payload.clone());
            }
            let keys = base.iter().chain(&later).map(|(k, _)| k);
            for key in probes.iter().chain(keys) {
                for payload in ["1", "22", "333"] {
                    let want = expected.get(key).map(|p| p == payload);
                    proptest::prop_assert_eq!(index.confirmed(key, PayloadHash::of(payload)), want);
                }
            }
        }
    }

    #[test]
    fn fingerprints_differ_when_any_part_or_its_boundary_differs() {
        let base = Fingerprint::of(&["builtin:rest", "http://a", "{}"]);
        assert_eq!(base, Fingerprint::of(&["builtin:rest", "http://a", "{}"]));
        assert_ne!(base, Fingerprint::of(&["builtin:rest", "http://b", "{}"]));
        assert_ne!(
            base,
            Fingerprint::of(&["builtin:salesforce", "http://a", "{}"])
        );
        assert_ne!(Fingerprint::of(&["ab", "c"]), Fingerprint::of(&["a", "bc"]));
    }
}
