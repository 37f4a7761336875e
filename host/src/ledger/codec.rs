//! How an entry is written as bytes, and which layouts this Sluice reads. Kept apart from
//! the store so that a second store keeps the same bytes and the same upgrade rules.

use super::model::Entry;

/// The layout of entries; a ledger of another version is refused, never reset.
/// Version 1 stored entries as JSON. Version 2 stores them as postcard (binary) and keeps
/// an index of failed records per sync; it still reads version 1 entries, so a version 1
/// ledger is upgraded in place on open (its index built once). Version 3 keeps delivered
/// records in each sync's delivered log instead of the store (entries keep the version 2
/// layout); older ledgers have theirs moved there on open.
pub const SCHEMA_VERSION: u32 = 3;
/// Versions this Sluice opens.
pub const READABLE_VERSIONS: [&str; 3] = ["1", "2", "3"];
/// The first byte of a version 2 entry; a version 1 entry is a JSON object, `{`.
const POSTCARD_TAG: u8 = 2;

/// Why stored bytes are not an entry.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{0}")]
    Postcard(#[from] postcard::Error),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown entry layout")]
    UnknownLayout,
}

/// An entry in the current layout (version 2: a tag byte, then postcard).
pub fn encode(entry: &Entry) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_extend(entry, vec![POSTCARD_TAG])
}

/// An entry in any readable layout.
pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
    match bytes.split_first() {
        Some((&POSTCARD_TAG, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((b'{', _)) => Ok(serde_json::from_slice(bytes)?),
        _ => Err(DecodeError::UnknownLayout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::model::Status;

    fn entry() -> Entry {
        Entry {
            status: Status::Rejected,
            attempts: 3,
            first_failure_ms: Some(1),
            last_attempt_ms: None,
            failure: None,
            destination_id: Some("d".into()),
            delivered_hash: None,
            payload_hash: Some(crate::ledger::PayloadHash(7)),
            payload: Some("{}".into()),
            resolution: None,
        }
    }

    #[test]
    fn an_entry_reads_back_as_written() {
        let bytes = encode(&entry()).unwrap();
        assert_eq!(bytes[0], POSTCARD_TAG);
        assert_eq!(decode(&bytes).unwrap(), entry());
    }

    #[test]
    fn a_version_1_json_entry_is_still_read() {
        let json = br#"{"status":"rejected","attempts":3,"first_failure_ms":1,"destination_id":"d","payload_hash":"00000000000000000000000000000007","payload":"{}"}"#;
        assert_eq!(decode(json).unwrap(), entry());
    }

    #[test]
    fn bytes_of_no_known_layout_are_refused() {
        assert!(matches!(decode(b"x"), Err(DecodeError::UnknownLayout)));
        assert!(matches!(decode(b""), Err(DecodeError::UnknownLayout)));
        assert!(matches!(
            decode(&[POSTCARD_TAG]),
            Err(DecodeError::Postcard(_))
        ));
    }
}
