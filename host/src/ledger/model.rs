//! What the ledger knows of a record and how that changes: the entry, its status, and
//! the two rules every run applies, as pure functions of the entry held before (if any).
//! [`decide`] says whether a record read from the source is sent; [`next_entry`] says
//! what the entry becomes once the record is settled. No storage here, so each row of
//! either table is tested on its own.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use super::hash::PayloadHash;
use crate::fate::{Decision, Fate, RecordFailure, Settled};

/// Where a record stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Read and not settled: a run stopped before the destination confirmed it.
    Pending,
    Delivered,
    /// Refused for its data: sent again by later runs and by the retry job.
    Rejected,
    /// Cannot succeed without a person: held until its data changes or a person acts.
    Permanent,
    /// A person marked it handled without sending it; held while its data is unchanged.
    Resolved,
}

impl Status {
    /// Not delivered, and not handled by a person: what the retry job may pick.
    pub fn is_failed(self) -> bool {
        matches!(self, Status::Rejected | Status::Pending | Status::Permanent)
    }

    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Delivered,
        Status::Rejected,
        Status::Permanent,
        Status::Resolved,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Rejected => "rejected",
            Status::Permanent => "permanent",
            Status::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Result<Status> {
        Status::ALL
            .into_iter()
            .find(|s| s.name() == text)
            .with_context(|| {
                format!("unknown status `{text}`: expected pending, delivered, rejected, permanent or resolved")
            })
    }
}

/// Who marked a record handled, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolution {
    pub by: String,
    pub why: String,
    pub at_ms: u64,
}

/// What the ledger knows of one record. Stored as postcard, which writes every field in
/// order (an absent one is a single byte), so no field may be skipped when serializing;
/// `default` lets version 1 (JSON) entries, which omitted absent fields, still be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub status: Status,
    /// Sends across all runs.
    pub attempts: u32,
    /// When the current run of failures began (milliseconds since the Unix epoch).
    #[serde(default)]
    pub first_failure_ms: Option<u64>,
    #[serde(default)]
    pub last_attempt_ms: Option<u64>,
    #[serde(default)]
    pub failure: Option<RecordFailure>,
    #[serde(default)]
    pub destination_id: Option<String>,
    /// Hash of the payload the destination last confirmed.
    #[serde(default)]
    pub delivered_hash: Option<PayloadHash>,
    /// Hash of the payload last settled (what a permanent hold is about).
    #[serde(default)]
    pub payload_hash: Option<PayloadHash>,
    /// The payload of a record not delivered, for the retry job.
    #[serde(default)]
    pub payload: Option<String>,
    #[serde(default)]
    pub resolution: Option<Resolution>,
    /// The failure is about deleting the record at the destination (a mirror run), not
    /// about sending its data. Kept after the version 2 layout (see `codec`).
    #[serde(skip)]
    pub deleting: bool,
}

/// Change detection: whether a record read from the source, with `payload`, is sent,
/// given the entry the ledger holds for its key.
pub fn decide(previous: Option<&Entry>, payload: &str, send_all: bool) -> Decision {
    let Some(entry) = previous else {
        return Decision::Send;
    };
    let hash = Some(PayloadHash::of(payload));
    match entry.status {
        Status::Permanent if entry.payload_hash == hash => Decision::Held,
        _ if send_all => Decision::Send,
        Status::Delivered | Status::Resolved if entry.delivered_hash == hash => Decision::Unchanged,
        _ => Decision::Send,
    }
}

/// What a run knows of a key the delivered log holds and the store does not: it was
/// delivered (the views add the rest from the log).
pub fn delivered_before() -> Entry {
    Entry {
        status: Status::Delivered,
        ..empty()
    }
}

fn empty() -> Entry {
    Entry {
        status: Status::Pending,
        attempts: 0,
        first_failure_ms: None,
        last_attempt_ms: None,
        failure: None,
        destination_id: None,
        delivered_hash: None,
        payload_hash: None,
        payload: None,
        resolution: None,
        deleting: false,
    }
}

/// The entry after `settled`, given what the ledger held before.
pub fn next_entry(previous: Option<Entry>, settled: &Settled, at_ms: u64) -> Entry {
    let hash = PayloadHash::of(&settled.record.payload);
    let mut entry = previous.unwrap_or_else(empty);
    entry.deleting = settled.record.operation == crate::sandbox::Operation::Delete;
    // The id the record was sent with (an update or a delete addresses it): the retry
    // job reads the stored entry alone, and must send it with the same id.
    if entry.destination_id.is_none() {
        entry.destination_id = settled.record.destination_id.clone();
    }
    entry.attempts = entry.attempts.saturating_add(settled.attempts);
    if settled.attempts > 0 {
        entry.last_attempt_ms = Some(at_ms);
    }
    let failed = |entry: &mut Entry, status: Status, failure: Option<RecordFailure>| {
        // A failure streak starts at the first failure after a success (or ever).
        if !matches!(
            entry.status,
            Status::Rejected | Status::Permanent | Status::Pending
        ) || entry.first_failure_ms.is_none()
        {
            entry.first_failure_ms = Some(at_ms);
        }
        entry.status = status;
        if failure.is_some() {
            entry.failure = failure;
        }
        entry.payload = Some(settled.record.payload.clone());
        entry.payload_hash = Some(hash);
        entry.resolution = None;
    };
    match &settled.fate {
        Fate::Delivered(id) => {
            entry.status = Status::Delivered;
            entry.destination_id = id.clone().or(entry.destination_id.take());
            entry.delivered_hash = Some(hash);
            entry.payload_hash = Some(hash);
            entry.failure = None;
            entry.first_failure_ms = None;
            entry.payload = None;
            entry.resolution = None;
        }
        Fate::Rejected(f) => failed(&mut entry, Status::Rejected, Some(f.clone())),
        Fate::Permanent(f) => failed(&mut entry, Status::Permanent, Some(f.clone())),
        Fate::Pending(f) => {
            // Unconfirmed: a record delivered before keeps that status only if this run
            // tried to send the same data again.
            if entry.status == Status::Delivered && entry.delivered_hash == Some(hash) {
                return entry;
            }
            failed(&mut entry, Status::Pending, f.clone());
        }
    }
    entry
}

/// The entry after a person marked it handled: held while its data is unchanged.
pub fn resolved(mut entry: Entry, resolution: Resolution) -> Entry {
    entry.status = Status::Resolved;
    entry.delivered_hash = entry.payload_hash;
    entry.resolution = Some(resolution);
    entry
}

#[cfg(test)]
mod tests {
    //! One test per row of the two tables: [`decide`] (previous entry × data × send_all)
    //! and [`next_entry`] (previous entry × fate).

    use super::*;
    use crate::fate::Record;

    const OLD: &str = "{\"v\":1}";
    const NEW: &str = "{\"v\":2}";

    fn settled(payload: &str, fate: Fate, attempts: u32) -> Settled {
        Settled {
            record: Record::new("k".into(), payload.into()),
            fate,
            attempts,
        }
    }

    fn failure(code: &str) -> RecordFailure {
        RecordFailure::new(code, "m")
    }

    /// The entry after `fates` settle in order on a new key, at times 100, 200, ...
    fn after(fates: &[(&str, Fate)]) -> Entry {
        let mut entry = None;
        for (i, (payload, fate)) in fates.iter().enumerate() {
            entry = Some(next_entry(
                entry,
                &settled(payload, fate.clone(), 1),
                100 * (i as u64 + 1),
            ));
        }
        entry.expect("at least one fate")
    }

    fn delivered() -> Entry {
        after(&[(OLD, Fate::Delivered(Some("id1".into())))])
    }

    // decide: one test per row.

    #[test]
    fn decide_sends_a_key_never_seen() {
        assert_eq!(decide(None, OLD, false), Decision::Send);
    }

    #[test]
    fn decide_skips_a_delivered_record_with_the_same_data() {
        assert_eq!(decide(Some(&delivered()), OLD, false), Decision::Unchanged);
    }

    #[test]
    fn decide_sends_a_delivered_record_whose_data_changed() {
        assert_eq!(decide(Some(&delivered()), NEW, false), Decision::Send);
    }

    #[test]
    fn decide_sends_a_delivered_record_again_under_send_all() {
        assert_eq!(decide(Some(&delivered()), OLD, true), Decision::Send);
    }

    #[test]
    fn decide_holds_an_unchanged_permanent_record_even_under_send_all() {
        let held = after(&[(OLD, Fate::Permanent(failure("P")))]);
        assert_eq!(decide(Some(&held), OLD, false), Decision::Held);
        assert_eq!(decide(Some(&held), OLD, true), Decision::Held);
    }

    #[test]
    fn decide_sends_a_permanent_record_whose_data_changed() {
        let held = after(&[(OLD, Fate::Permanent(failure("P")))]);
        assert_eq!(decide(Some(&held), NEW, false), Decision::Send);
    }

    #[test]
    fn decide_sends_rejected_and_pending_records_with_the_same_data() {
        let rejected = after(&[(OLD, Fate::Rejected(failure("R")))]);
        let pending = after(&[(OLD, Fate::Pending(None))]);
        assert_eq!(decide(Some(&rejected), OLD, false), Decision::Send);
        assert_eq!(decide(Some(&pending), OLD, false), Decision::Send);
    }

    #[test]
    fn decide_skips_a_resolved_record_while_its_data_is_unchanged() {
        let entry = after(&[(OLD, Fate::Rejected(failure("R")))]);
        let resolution = Resolution {
            by: "ops".into(),
            why: "done by hand".into(),
            at_ms: 1,
        };
        let entry = resolved(entry, resolution);
        assert_eq!(decide(Some(&entry), OLD, false), Decision::Unchanged);
        assert_eq!(decide(Some(&entry), NEW, false), Decision::Send);
        assert_eq!(decide(Some(&entry), OLD, true), Decision::Send);
    }

    // next_entry: one test per row (previous status × fate).

    #[test]
    fn new_key_delivered_is_delivered_with_its_hash_and_id() {
        let e = next_entry(
            None,
            &settled(OLD, Fate::Delivered(Some("id".into())), 2),
            7,
        );
        assert_eq!(
            (e.status, e.attempts, e.last_attempt_ms),
            (Status::Delivered, 2, Some(7))
        );
        assert_eq!(e.delivered_hash, Some(PayloadHash::of(OLD)));
        assert_eq!(e.payload_hash, Some(PayloadHash::of(OLD)));
        assert_eq!(e.destination_id.as_deref(), Some("id"));
        assert_eq!(
            (e.payload, e.failure, e.first_failure_ms),
            (None, None, None)
        );
    }

    #[test]
    fn new_key_rejected_keeps_its_payload_and_starts_a_streak() {
        let e = next_entry(None, &settled(OLD, Fate::Rejected(failure("R")), 1), 7);
        assert_eq!((e.status, e.first_failure_ms), (Status::Rejected, Some(7)));
        assert_eq!(e.failure, Some(failure("R")));
        assert_eq!(e.payload.as_deref(), Some(OLD));
        assert_eq!(e.payload_hash, Some(PayloadHash::of(OLD)));
        assert_eq!(e.delivered_hash, None);
    }

    #[test]
    fn new_key_permanent_is_permanent_with_its_payload() {
        let e = next_entry(None, &settled(OLD, Fate::Permanent(failure("P")), 0), 7);
        assert_eq!((e.status, e.first_failure_ms), (Status::Permanent, Some(7)));
        assert_eq!(e.payload.as_deref(), Some(OLD));
        assert_eq!(
            (e.attempts, e.last_attempt_ms),
            (0, None),
            "a precheck settles without sending"
        );
    }

    #[test]
    fn new_key_pending_is_pending_with_no_failure() {
        let e = next_entry(None, &settled(OLD, Fate::Pending(None), 0), 7);
        assert_eq!(
            (e.status, e.failure, e.first_failure_ms),
            (Status::Pending, None, Some(7))
        );
        assert_eq!(e.payload.as_deref(), Some(OLD));
    }

    #[test]
    fn failed_then_failed_keeps_the_streak_start_and_takes_the_new_failure() {
        let e = after(&[
            (OLD, Fate::Rejected(failure("A"))),
            (NEW, Fate::Permanent(failure("B"))),
        ]);
        assert_eq!(
            (e.status, e.attempts, e.first_failure_ms),
            (Status::Permanent, 2, Some(100))
        );
        assert_eq!(e.failure, Some(failure("B")));
        assert_eq!(e.payload.as_deref(), Some(NEW));
        assert_eq!(e.last_attempt_ms, Some(200));
    }

    #[test]
    fn failed_then_pending_without_a_failure_keeps_the_last_failure() {
        let e = after(&[
            (OLD, Fate::Rejected(failure("A"))),
            (OLD, Fate::Pending(None)),
        ]);
        assert_eq!((e.status, e.first_failure_ms), (Status::Pending, Some(100)));
        assert_eq!(e.failure, Some(failure("A")));
    }

    #[test]
    fn failed_then_delivered_clears_the_failure_the_payload_and_the_streak() {
        let e = after(&[
            (OLD, Fate::Rejected(failure("A"))),
            (NEW, Fate::Delivered(Some("id".into()))),
        ]);
        assert_eq!(e.status, Status::Delivered);
        assert_eq!(
            (e.failure, e.first_failure_ms, e.payload),
            (None, None, None)
        );
        assert_eq!(e.delivered_hash, Some(PayloadHash::of(NEW)));
        assert_eq!(e.attempts, 2);
    }

    #[test]
    fn delivered_then_delivered_without_an_id_keeps_the_earlier_id() {
        let e = after(&[
            (OLD, Fate::Delivered(Some("id1".into()))),
            (NEW, Fate::Delivered(None)),
        ]);
        assert_eq!(e.destination_id.as_deref(), Some("id1"));
        assert_eq!(e.delivered_hash, Some(PayloadHash::of(NEW)));
    }

    #[test]
    fn delivered_then_failed_starts_a_new_streak() {
        let e = after(&[
            (OLD, Fate::Rejected(failure("A"))),
            (OLD, Fate::Delivered(None)),
            (NEW, Fate::Rejected(failure("B"))),
        ]);
        assert_eq!(
            (e.status, e.first_failure_ms),
            (Status::Rejected, Some(300))
        );
        assert_eq!(
            e.delivered_hash,
            Some(PayloadHash::of(OLD)),
            "what the destination has"
        );
        assert_eq!(e.payload_hash, Some(PayloadHash::of(NEW)));
    }

    #[test]
    fn delivered_then_pending_with_the_same_data_stays_delivered() {
        let e = next_entry(
            Some(delivered()),
            &settled(OLD, Fate::Pending(None), 1),
            500,
        );
        assert_eq!(e.status, Status::Delivered);
        assert_eq!((e.payload, e.first_failure_ms), (None, None));
        assert_eq!((e.attempts, e.last_attempt_ms), (2, Some(500)));
    }

    #[test]
    fn delivered_then_pending_with_changed_data_is_pending() {
        let e = next_entry(
            Some(delivered()),
            &settled(NEW, Fate::Pending(None), 0),
            500,
        );
        assert_eq!((e.status, e.first_failure_ms), (Status::Pending, Some(500)));
        assert_eq!(e.payload.as_deref(), Some(NEW));
    }

    #[test]
    fn resolved_then_failed_drops_the_resolution_and_starts_a_streak() {
        let resolution = Resolution {
            by: "ops".into(),
            why: "w".into(),
            at_ms: 150,
        };
        let entry = resolved(after(&[(OLD, Fate::Rejected(failure("A")))]), resolution);
        let e = next_entry(
            Some(entry),
            &settled(NEW, Fate::Rejected(failure("B")), 1),
            300,
        );
        assert_eq!(
            (e.status, e.resolution, e.first_failure_ms),
            (Status::Rejected, None, Some(300))
        );
    }

    #[test]
    fn resolved_then_delivered_drops_the_resolution() {
        let resolution = Resolution {
            by: "ops".into(),
            why: "w".into(),
            at_ms: 150,
        };
        let entry = resolved(after(&[(OLD, Fate::Permanent(failure("A")))]), resolution);
        let e = next_entry(Some(entry), &settled(NEW, Fate::Delivered(None), 1), 300);
        assert_eq!((e.status, e.resolution), (Status::Delivered, None));
    }

    #[test]
    fn resolving_holds_the_last_payload_as_if_delivered() {
        let entry = after(&[(OLD, Fate::Permanent(failure("A")))]);
        let resolution = Resolution {
            by: "ops".into(),
            why: "w".into(),
            at_ms: 150,
        };
        let e = resolved(entry, resolution.clone());
        assert_eq!(e.status, Status::Resolved);
        assert_eq!(e.delivered_hash, Some(PayloadHash::of(OLD)));
        assert_eq!(e.resolution, Some(resolution));
        assert!(!e.status.is_failed());
    }

    #[test]
    fn attempts_saturate_instead_of_overflowing() {
        let mut entry = delivered();
        entry.attempts = u32::MAX;
        let e = next_entry(Some(entry), &settled(OLD, Fate::Delivered(None), 5), 1);
        assert_eq!(e.attempts, u32::MAX);
    }
}
