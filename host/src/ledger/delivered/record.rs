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

/// The payload hash of a deletion: no payload hashes to it in practice (a 128-bit
/// hash), and a deletion needs no other mark, so the log's layout is unchanged.
const DELETED: [u8; 16] = [0; 16];

impl<'a> Delivery<'a> {
    pub fn payload_hash(&self) -> PayloadHash {
        PayloadHash(u128::from_le_bytes(self.hash))
    }

    /// The destination confirmed `key` deleted (a mirror run): the key is forgotten, as
    /// if never delivered. A snapshot holds no deletions; compaction drops the key.
    pub fn deletion(key: &'a str, at_ms: u64) -> Delivery<'a> {
        Delivery {
            key,
            hash: DELETED,
            destination_id: None,
            attempts: 0,
            at_ms,
        }
    }

    pub fn is_deletion(&self) -> bool {
        self.hash == DELETED
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
    /// Whether the last record of the key was its deletion.
    pub fn is_deleted(&self) -> bool {
        self.hash.0 == 0
    }

    /// Folds a later record of the same key into this one.
    pub fn then(&mut self, later: &Delivery<'_>) {
        if later.is_deletion() {
            *self = Delivered::first(later);
            return;
        }
        self.hash = later.payload_hash();
        if let Some(id) = later.destination_id {
            self.destination_id = Some(id.to_string());
        }
        self.attempts = self.attempts.saturating_add(later.attempts);
        self.at_ms = later.at_ms;
    }

    /// Folds in what later records of the same key add up to (see [`Delivered::then`]).
    pub fn then_all(&mut self, later: Delivered) {
        if later.is_deleted() {
            *self = later;
            return;
        }
        self.hash = later.hash;
        if later.destination_id.is_some() {
            self.destination_id = later.destination_id;
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

/// Each key's state, folded from its records in the order they were read (a deleted key's
/// state is its deletion, until [`forget_deleted`]).
pub type States = HashMap<String, Delivered>;

/// Drops the keys whose last record was their deletion.
pub fn forget_deleted(states: &mut States) {
    states.retain(|_, state| !state.is_deleted());
}

/// Folds `record` into the state of its key (its first record starts it).
pub fn fold(states: &mut States, record: &Delivery<'_>) {
    match states.get_mut(record.key) {
        Some(state) => state.then(record),
        None => {
            states.insert(record.key.to_string(), Delivered::first(record));
        }
    }
}

/// Change detection's view of the log: for each key, the payload the destination last
/// confirmed, as 64-bit hashes of both. The snapshot's keys (each once) are a vector
/// sorted by key hash, 16 bytes a key, with a directory of its buckets by the hash's top
/// bits, 2 bytes a key (10,000,000 keys: 180 MB; a hash map took 290); the segments after
/// it, newer and usually small, are a hash map over it. Two keys whose 64-bit hashes collide only
/// cost a resend: a record is skipped only when its payload's hash also matches.
#[derive(Default)]
pub struct Index {
    base: Vec<(u64, u64)>,
    /// Where each bucket of `base` starts, a bucket being the keys whose top `bits` bits
    /// are its number; about two keys a bucket, so 2 more bytes a key.
    directory: Vec<u32>,
    bits: u32,
    overlay: HashMap<u64, u64, BuildNoHashHasher<u64>>,
}

impl Index {
    /// An index whose snapshot holds at most about `keys` keys.
    pub fn with_capacity(keys: usize) -> Index {
        Index {
            base: Vec::with_capacity(keys),
            ..Index::default()
        }
    }

    /// A record of the snapshot (each key once, in any order); [`Index::seal`] after the
    /// last.
    pub fn insert_base(&mut self, record: &Delivery<'_>) {
        if record.is_deletion() {
            return;
        }
        self.base
            .push((key_hash(record.key), record.payload_hash().0 as u64));
    }

    /// Sorts the snapshot's keys for searching, in place: no second copy is made, so the
    /// memory the read reserved beyond them is never touched. A snapshot holds each key
    /// once; were one there twice, which record is newer is lost to the sort, so the key
    /// is dropped and its record sent again.
    pub fn seal(&mut self) {
        self.base.sort_unstable_by_key(|&(key, _)| key);
        let twice = self.base.windows(2).any(|w| w[0].0 == w[1].0);
        if twice {
            let base = std::mem::take(&mut self.base);
            let mut kept: Vec<(u64, u64)> = Vec::with_capacity(base.len());
            for run in base.chunk_by(|a, b| a.0 == b.0) {
                if run.len() == 1 {
                    kept.push(run[0]);
                }
            }
            self.base = kept;
        }
        self.bits = (usize::BITS - (self.base.len() / 2).leading_zeros()).clamp(1, 32);
        let buckets = 1usize << self.bits;
        let mut directory = Vec::with_capacity(buckets + 1);
        let mut at = 0usize;
        for bucket in 0..buckets {
            while at < self.base.len() && ((self.base[at].0 >> (64 - self.bits)) as usize) < bucket
            {
                at += 1;
            }
            directory.push(at as u32);
        }
        directory.push(self.base.len() as u32);
        self.directory = directory;
    }

    /// A record of a segment: newer than the snapshot and than earlier segments.
    pub fn insert(&mut self, record: &Delivery<'_>) {
        let hash = match record.payload_hash().0 as u64 {
            _ if record.is_deletion() => GONE,
            // A payload whose short hash is the mark of a deletion: one in 2^64, costs a
            // resend.
            GONE => GONE ^ 1,
            hash => hash,
        };
        self.overlay.insert(key_hash(record.key), hash);
    }

    /// Whether the destination confirmed `hash` for `key`; `None` when the log has no
    /// delivery of `key`.
    pub fn confirmed(&self, key: &str, hash: PayloadHash) -> Option<bool> {
        let key = key_hash(key);
        let confirmed = match self.overlay.get(&key) {
            Some(&GONE) => return None,
            Some(&confirmed) => confirmed,
            None => self.base_get(key)?,
        };
        Some(confirmed == hash.0 as u64)
    }

    /// The snapshot's entry for `key`: its bucket in the directory, then a scan of the
    /// few keys in it (two cache misses, where a binary search takes twenty).
    fn base_get(&self, key: u64) -> Option<u64> {
        if self.base.is_empty() {
            return None;
        }
        let bucket = (key >> (64 - self.bits)) as usize;
        let (start, end) = (self.directory[bucket], self.directory[bucket + 1]);
        self.base[start as usize..end as usize]
            .iter()
            .find(|&&(k, _)| k == key)
            .map(|&(_, payload)| payload)
    }

    /// How many keys (a key of the snapshot that a segment delivered again counts once).
    pub fn len(&self) -> usize {
        let (mut only_in_segments, mut deleted) = (0, 0);
        for (&key, &hash) in &self.overlay {
            match (hash == GONE, self.base_get(key).is_some()) {
                (false, false) => only_in_segments += 1,
                (true, true) => deleted += 1,
                _ => {}
            }
        }
        self.base.len() + only_in_segments - deleted
    }

    /// Whether the log holds a delivery of `key`.
    pub fn contains(&self, key: &str) -> bool {
        let key = key_hash(key);
        match self.overlay.get(&key) {
            Some(&hash) => hash != GONE,
            None => self.base_get(key).is_some(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.base.is_empty() && self.overlay.is_empty()
    }
}

/// The overlay's mark of a key deleted since the snapshot.
const GONE: u64 = 0;

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
                index.insert_base(&postcard::from_bytes(&encoded(key, payload)).unwrap());
                expected.insert(key.clone(), payload.clone());
            }
            // A key the snapshot holds twice is forgotten (sent again).
            for (key, _) in &base {
                if base.iter().filter(|(k, _)| k == key).count() > 1 {
                    expected.remove(key);
                }
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
