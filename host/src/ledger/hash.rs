//! The payload hash change detection compares: what the destination last confirmed, and
//! what a permanent hold is about.

use serde::{Deserialize, Serialize};

/// A content hash of a payload, for change detection: 128 bits of XXH3, fast enough to
/// hash every record of every run, and wide enough that two different payloads of one
/// key never collide in practice. Binary in the ledger, hexadecimal in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PayloadHash(pub u128);

impl PayloadHash {
    pub fn of(payload: &str) -> PayloadHash {
        PayloadHash(xxhash_rust::xxh3::xxh3_128(payload.as_bytes()))
    }
}

impl std::fmt::Display for PayloadHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl Serialize for PayloadHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u128(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for PayloadHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            u128::from_str_radix(&text, 16)
                .map(PayloadHash)
                .map_err(|_| serde::de::Error::custom(format!("`{text}` is not a payload hash")))
        } else {
            u128::deserialize(deserializer).map(PayloadHash)
        }
    }
}
