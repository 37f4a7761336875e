//! How an entry is written as bytes, and which layouts this Sluice reads. Kept apart from
//! the store so that a second store keeps the same bytes and the same upgrade rules.

use super::PayloadHash;
use super::model::{Entry, Status};

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
/// The first byte of an entry with fields after the version 2 layout: the version 2
/// bytes, then [`Extension`]. Only entries that need it are written so (a failed delete),
/// so a ledger without them stays readable by the Sluice before it.
const EXTENDED_TAG: u8 = 3;

/// What an entry holds beyond the version 2 layout.
#[derive(serde::Serialize, serde::Deserialize)]
struct Extension {
    deleting: bool,
}

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
    if !entry.deleting {
        return postcard::to_extend(entry, vec![POSTCARD_TAG]);
    }
    let bytes = postcard::to_extend(entry, vec![EXTENDED_TAG])?;
    postcard::to_extend(&Extension { deleting: true }, bytes)
}

/// What the retry job selects by, borrowed from an entry's stored bytes: a pass over
/// many failures copies only what it keeps (the payload, the id), not each failure's text.
/// Mirrors [`Entry`]'s fields, in order (postcard writes them so; a test checks they
/// agree).
#[derive(Debug, serde::Deserialize)]
pub struct EntryView<'a> {
    pub status: Status,
    pub attempts: u32,
    pub first_failure_ms: Option<u64>,
    pub last_attempt_ms: Option<u64>,
    #[serde(borrow)]
    pub failure: Option<FailureView<'a>>,
    #[serde(borrow)]
    pub destination_id: Option<&'a str>,
    pub delivered_hash: Option<PayloadHash>,
    pub payload_hash: Option<PayloadHash>,
    #[serde(borrow)]
    pub payload: Option<&'a str>,
    #[serde(borrow)]
    pub resolution: Option<ResolutionView<'a>>,
    #[serde(skip)]
    pub deleting: bool,
}

#[derive(Debug, serde::Deserialize)]
pub struct FailureView<'a> {
    pub code: &'a str,
    pub message: &'a str,
    #[serde(borrow)]
    pub fields: Vec<&'a str>,
}

#[derive(Debug, serde::Deserialize)]
pub struct ResolutionView<'a> {
    pub by: &'a str,
    pub why: &'a str,
    pub at_ms: u64,
}

/// The view of an entry in the binary layouts; `None` for a version 1 (JSON) entry, which
/// the caller decodes whole.
pub fn view(bytes: &[u8]) -> Result<Option<EntryView<'_>>, DecodeError> {
    match bytes.split_first() {
        Some((&POSTCARD_TAG, rest)) => Ok(Some(postcard::from_bytes(rest)?)),
        Some((&EXTENDED_TAG, rest)) => {
            let (mut view, rest): (EntryView<'_>, _) = postcard::take_from_bytes(rest)?;
            let extension: Extension = postcard::from_bytes(rest)?;
            view.deleting = extension.deleting;
            Ok(Some(view))
        }
        Some((b'{', _)) => Ok(None),
        _ => Err(DecodeError::UnknownLayout),
    }
}

/// An entry in any readable layout.
pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
    match bytes.split_first() {
        Some((&POSTCARD_TAG, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&EXTENDED_TAG, rest)) => {
            let (mut entry, rest): (Entry, _) = postcard::take_from_bytes(rest)?;
            let extension: Extension = postcard::from_bytes(rest)?;
            entry.deleting = extension.deleting;
            Ok(entry)
        }
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
            deleting: false,
        }
    }

    /// The view reads what the entry holds, in both binary layouts: its fields are
    /// [`Entry`]'s, in the same order.
    #[test]
    fn the_view_of_an_entry_agrees_with_the_entry() {
        let full = Entry {
            status: Status::Permanent,
            attempts: 9,
            first_failure_ms: Some(11),
            last_attempt_ms: Some(12),
            failure: Some(crate::fate::RecordFailure {
                code: "DACO-02".into(),
                message: "parent".into(),
                fields: vec!["ParentCrmId".into(), "Name".into()],
            }),
            destination_id: Some("001X".into()),
            delivered_hash: Some(crate::ledger::PayloadHash(3)),
            payload_hash: Some(crate::ledger::PayloadHash(4)),
            payload: Some("{\"a\": \"ü\"}".into()),
            resolution: Some(crate::ledger::Resolution {
                by: "ann".into(),
                why: "known".into(),
                at_ms: 13,
            }),
            deleting: false,
        };
        for entry in [
            full.clone(),
            Entry {
                deleting: true,
                ..full.clone()
            },
            entry(),
        ] {
            let bytes = encode(&entry).unwrap();
            let view = view(&bytes).unwrap().unwrap();
            let failure = view.failure.as_ref();
            assert_eq!(
                (
                    view.status,
                    view.attempts,
                    view.first_failure_ms,
                    view.last_attempt_ms,
                    failure.map(|f| (f.code, f.message, f.fields.clone())),
                    view.destination_id,
                    view.delivered_hash,
                    view.payload_hash,
                    view.payload,
                    view.resolution.as_ref().map(|r| (r.by, r.why, r.at_ms)),
                    view.deleting,
                ),
                (
                    entry.status,
                    entry.attempts,
                    entry.first_failure_ms,
                    entry.last_attempt_ms,
                    entry.failure.as_ref().map(|f| (
                        f.code.as_str(),
                        f.message.as_str(),
                        f.fields.iter().map(String::as_str).collect::<Vec<_>>()
                    )),
                    entry.destination_id.as_deref(),
                    entry.delivered_hash,
                    entry.payload_hash,
                    entry.payload.as_deref(),
                    entry
                        .resolution
                        .as_ref()
                        .map(|r| (r.by.as_str(), r.why.as_str(), r.at_ms)),
                    entry.deleting,
                )
            );
        }
        assert!(view(b"{\"status\": \"rejected\"}").unwrap().is_none());
    }

    #[test]
    fn a_failed_delete_reads_back_as_one_and_others_keep_the_version_2_layout() {
        let deleting = Entry {
            deleting: true,
            ..entry()
        };
        let bytes = encode(&deleting).unwrap();
        assert_eq!(bytes[0], EXTENDED_TAG);
        assert_eq!(decode(&bytes).unwrap(), deleting);
        let plain = encode(&entry()).unwrap();
        assert_eq!(&bytes[1..plain.len()], &plain[1..]);
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
