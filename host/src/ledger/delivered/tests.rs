//! The log's promises, file by file: what is appended reads back after a reopen, a torn
//! end is cut, damage is refused with its file and offset, and a compaction cut short
//! leaves the old state or the new one.

use super::*;
use crate::ledger::PayloadHash;

const SECOND: Duration = Duration::from_secs(1);

fn delivery<'a>(key: &'a str, payload: &str, id: Option<&'a str>) -> Delivery<'a> {
    Delivery {
        key,
        hash: PayloadHash::of(payload).0.to_le_bytes(),
        destination_id: id,
        attempts: 1,
        at_ms: 7,
    }
}

/// A log in a new folder.
fn new_log() -> (tempfile::TempDir, DeliveredLog) {
    let dir = tempfile::tempdir().unwrap();
    let log = DeliveredLog::open(dir.path(), SECOND).unwrap();
    (dir, log)
}

fn state(log: &DeliveredLog) -> Vec<(String, PayloadHash, Option<String>, u32)> {
    let (all, _) = log.all().unwrap();
    let mut state: Vec<_> = all
        .into_iter()
        .map(|(k, d)| (k, d.hash, d.destination_id, d.attempts))
        .collect();
    state.sort_by(|a, b| a.0.cmp(&b.0));
    state
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn only_segment(dir: &Path) -> PathBuf {
    let segments: Vec<_> = names(dir)
        .into_iter()
        .filter(|n| n.starts_with("segment-"))
        .collect();
    assert_eq!(segments.len(), 1, "{segments:?}");
    dir.join(&segments[0])
}

#[test]
fn appended_deliveries_read_back_after_a_reopen() {
    let (dir, log) = new_log();
    log.append(&[delivery("a", "1", Some("001")), delivery("b", "1", None)])
        .unwrap();
    log.append(&[delivery("a", "2", None)]).unwrap();
    log.close_segment().unwrap();
    drop(log);

    let log = DeliveredLog::open(dir.path(), SECOND).unwrap();
    assert_eq!(
        state(&log),
        [
            ("a".into(), PayloadHash::of("2"), Some("001".into()), 2),
            ("b".into(), PayloadHash::of("1"), None, 1),
        ]
    );
    let (index, fingerprint) = log.index().unwrap();
    assert_eq!(fingerprint, None);
    assert_eq!(index.confirmed("a", PayloadHash::of("2")), Some(true));
    assert_eq!(index.confirmed("a", PayloadHash::of("1")), Some(false));
    assert_eq!(log.get("b").unwrap().unwrap().hash, PayloadHash::of("1"));
    assert_eq!(log.get("c").unwrap(), None);
}

#[test]
fn a_segment_with_its_last_record_cut_short_is_cut_and_the_rest_kept() {
    let (dir, log) = new_log();
    log.append(&[delivery("a", "1", None)]).unwrap();
    log.append(&[delivery("b", "1", None)]).unwrap();
    log.close_segment().unwrap();
    drop(log);
    let segment = only_segment(dir.path());
    let whole = fs::metadata(&segment).unwrap().len();
    let file = OpenOptions::new().write(true).open(&segment).unwrap();
    file.set_len(whole - 3).unwrap();

    let log = DeliveredLog::open(dir.path(), SECOND).unwrap();
    assert_eq!(
        state(&log).into_iter().map(|s| s.0).collect::<Vec<_>>(),
        ["a"]
    );
    assert!(
        fs::metadata(&segment).unwrap().len() < whole - 3,
        "the torn frame is cut off the file"
    );
    // Appends after the cut follow the good frames.
    log.append(&[delivery("c", "1", None)]).unwrap();
    log.close_segment().unwrap();
    drop(log);
    let log = DeliveredLog::open(dir.path(), SECOND).unwrap();
    assert_eq!(
        state(&log).into_iter().map(|s| s.0).collect::<Vec<_>>(),
        ["a", "c"]
    );
}

#[test]
fn a_flipped_byte_in_the_middle_of_a_segment_stops_with_the_file_and_offset() {
    let (dir, log) = new_log();
    for key in ["a", "b", "c"] {
        log.append(&[delivery(key, "1", None)]).unwrap();
    }
    log.close_segment().unwrap();
    drop(log);
    let segment = only_segment(dir.path());
    let mut bytes = fs::read(&segment).unwrap();
    let middle = bytes.len() / 2 + 4;
    bytes[middle] ^= 0x01;
    fs::write(&segment, &bytes).unwrap();

    let err = DeliveredLog::open(dir.path(), SECOND).err().unwrap();
    let text = err.to_string();
    assert!(matches!(err, LogError::Damaged { .. }), "{text}");
    assert!(text.contains(&segment.display().to_string()), "{text}");
    assert!(text.contains("fails its checksum"), "{text}");
    // Nothing was cut or reset: the file is as it was.
    assert_eq!(fs::read(&segment).unwrap(), bytes);
}

#[test]
fn damage_in_a_snapshot_is_refused_even_at_its_end() {
    let (dir, log) = new_log();
    log.append(&[delivery("a", "1", None)]).unwrap();
    log.compact_if_worth_it().unwrap();
    let snapshot = dir.path().join(&names(dir.path())[0]);
    assert!(snapshot.to_string_lossy().contains("snapshot-"));
    let len = fs::metadata(&snapshot).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&snapshot)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let err = log.index().err().unwrap();
    assert!(
        err.to_string().contains("ends inside a frame"),
        "a snapshot is written whole before its rename: {err}"
    );
}

#[test]
fn a_first_load_becomes_the_snapshot_and_later_changes_compact_into_it() {
    let (dir, log) = new_log();
    let keys: Vec<String> = (0..1000).map(|i| format!("acct-{i:06}")).collect();
    let first: Vec<_> = keys
        .iter()
        .map(|k| delivery(k, "v1", Some("0015g00000XyZab")))
        .collect();
    log.append(&first).unwrap();
    let renamed = log.compact_if_worth_it().unwrap().unwrap();
    assert_eq!(renamed.segments, 1);
    assert_eq!(names(dir.path()), ["snapshot-0000000000000002"]);

    // A run that changes a tenth of the records: a segment beside the snapshot.
    let changed: Vec<_> = keys
        .iter()
        .step_by(10)
        .map(|k| delivery(k, "v2", None))
        .collect();
    log.append(&changed).unwrap();
    let compacted = log.compact_if_worth_it().unwrap();
    assert_eq!(
        compacted, None,
        "a small segment is not worth a rewrite yet"
    );
    log.append(&changed[..50]).unwrap();
    log.append(&changed[50..]).unwrap();
    for _ in 0..8 {
        log.append(&changed[..1]).unwrap();
        log.close_segment().unwrap();
    }
    let compacted = log.compact_if_worth_it().unwrap().unwrap();
    assert_eq!(compacted.keys, 1000);
    assert_eq!(names(dir.path()).len(), 1, "{:?}", names(dir.path()));

    let all = state(&log);
    assert_eq!(all.len(), 1000);
    let k0 = &all[0];
    assert_eq!(
        (k0.1, k0.2.as_deref(), k0.3),
        (PayloadHash::of("v2"), Some("0015g00000XyZab"), 11),
        "delivered eleven times: attempts add up, the id is kept"
    );
    let k1 = &all[1];
    assert_eq!((k1.1, k1.3), (PayloadHash::of("v1"), 1));
    let bytes = fs::metadata(dir.path().join(&names(dir.path())[0]))
        .unwrap()
        .len();
    assert!(
        bytes / 1000 <= 64,
        "{} bytes a record with a 15-character id",
        bytes / 1000
    );
}

#[test]
fn a_compaction_cut_short_before_its_rename_leaves_the_old_state() {
    let (dir, log) = new_log();
    log.append(&[delivery("a", "1", None)]).unwrap();
    log.close_segment().unwrap();
    // What a crash mid-write leaves: a temporary snapshot, half written.
    fs::write(dir.path().join("snapshot-0000000000000009.tmp"), b"SLUI").unwrap();
    drop(log);
    let log = DeliveredLog::open(dir.path(), SECOND).unwrap();
    assert_eq!(state(&log).len(), 1);
    assert!(names(dir.path()).iter().all(|n| !n.ends_with(".tmp")));
}

#[test]
fn a_compaction_cut_short_after_its_rename_leaves_the_new_state() {
    let (dir, log) = new_log();
    log.append(&[delivery("a", "1", None)]).unwrap();
    log.compact_if_worth_it().unwrap(); // snapshot-2
    log.append(&[delivery("a", "2", None), delivery("b", "2", None)])
        .unwrap();
    log.close_segment().unwrap(); // segment-2
    let old: Vec<(String, Vec<u8>)> = names(dir.path())
        .into_iter()
        .map(|n| (n.clone(), fs::read(dir.path().join(&n)).unwrap()))
        .collect();
    log.compact_if_worth_it().unwrap().unwrap(); // snapshot-3
    let new_state = state(&log);
    // Put back the files the compaction deleted after its rename: the crash came
    // between the rename and the deletes.
    for (name, bytes) in old {
        fs::write(dir.path().join(name), bytes).unwrap();
    }
    drop(log);
    let log = DeliveredLog::open(dir.path(), SECOND).unwrap();
    assert_eq!(state(&log), new_state);
    assert_eq!(state(&log)[0].3, 2, "segment-2 is not counted twice");
    assert_eq!(names(dir.path()), ["snapshot-0000000000000003"]);
}

#[test]
fn a_reset_forgets_every_delivery_and_names_the_new_destination() {
    let (dir, log) = new_log();
    log.append(&[delivery("a", "1", None)]).unwrap();
    let there = Fingerprint::of(&["there"]);
    log.reset(there).unwrap();
    assert_eq!(state(&log), []);
    log.append(&[delivery("b", "1", None)]).unwrap();
    log.close_segment().unwrap();
    drop(log);
    let log = DeliveredLog::open(dir.path(), SECOND).unwrap();
    let (index, fingerprint) = log.index().unwrap();
    assert_eq!(fingerprint, Some(there));
    assert_eq!(index.len(), 1);
}

#[test]
fn appends_reach_the_file_within_the_sync_interval_and_at_every_sync() {
    let on_disk = |dir: &Path| fs::metadata(only_segment(dir)).unwrap().len();
    // An interval of zero: every append is written out and synced as it comes.
    let dir = tempfile::tempdir().unwrap();
    let log = DeliveredLog::open(dir.path(), Duration::ZERO).unwrap();
    log.append(&[delivery("a", "1", None)]).unwrap();
    let after_one = on_disk(dir.path());
    log.append(&[delivery("b", "1", None)]).unwrap();
    assert!(
        on_disk(dir.path()) > after_one,
        "the second append is on disk"
    );

    // An hour: appends wait in the buffer until the ledger syncs the log.
    let dir = tempfile::tempdir().unwrap();
    let log = DeliveredLog::open(dir.path(), Duration::from_secs(3600)).unwrap();
    log.append(&[delivery("a", "1", None)]).unwrap();
    let buffered = on_disk(dir.path());
    log.append(&[delivery("b", "1", None)]).unwrap();
    assert_eq!(on_disk(dir.path()), buffered, "still in the buffer");
    log.sync().unwrap();
    assert!(on_disk(dir.path()) > buffered, "synced");
}

#[test]
fn segments_without_a_snapshot_compact_into_one_with_each_key_once() {
    let (dir, log) = new_log();
    for round in ["1", "2", "3"] {
        log.append(&[
            delivery("a", round, Some("id-a")),
            delivery(round, round, None),
        ])
        .unwrap();
        log.close_segment().unwrap();
    }
    let before = state(&log);
    for _ in 0..7 {
        log.append(&[delivery("b", "b", None)]).unwrap();
        log.close_segment().unwrap();
    }
    let compacted = log.compact_if_worth_it().unwrap().unwrap();
    assert_eq!((compacted.keys, compacted.segments), (5, 10));
    let names = names(dir.path());
    assert_eq!(names.len(), 1, "{names:?}");
    let after = state(&log);
    // In key order: 1, 2, 3 and a as they were, then b.
    assert_eq!(after[..4], before[..]);
    assert_eq!(
        after[3],
        ("a".into(), PayloadHash::of("3"), Some("id-a".into()), 3)
    );
    assert_eq!(after[4], ("b".into(), PayloadHash::of("b"), None, 7));
}

#[test]
fn a_frame_whose_checksum_holds_but_whose_records_do_not_decode_is_damage() {
    let (dir, log) = new_log();
    log.append(&[delivery("a", "1", None)]).unwrap();
    log.close_segment().unwrap();
    drop(log);
    let segment = only_segment(dir.path());
    let good_len = fs::metadata(&segment).unwrap().len();
    // A well-framed body that is not records: a key length far past the frame's end.
    let mut file = OpenOptions::new().append(true).open(&segment).unwrap();
    frame::write_frame(&mut file, &[0xff, 0xff, 0xff, 0x0f, b'x']).unwrap();
    drop(file);

    let log = DeliveredLog::open(dir.path(), SECOND).unwrap();
    let err = log.index().err().unwrap().to_string();
    assert!(err.contains("an unreadable record"), "{err}");
    assert!(err.contains(&format!("at byte {good_len}")), "{err}");
    assert!(err.contains(&segment.display().to_string()), "{err}");
}
