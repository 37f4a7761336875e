//! What a run reads: the sync's source, filtered through the ledger (skip what the
//! destination already has, hold what waits for a person, let the last of a repeated key
//! win), or records the retry job picked from the ledger.
//!
//! A source is read exactly once. The read spools every record to an unlinked file in the
//! state directory and remembers a 128-bit hash of every key (`repeats`), reporting unusable rows as it
//! goes; the send pass then streams the spool and skips all but the last row of a repeated
//! key. Reading the source twice would let a file replaced between the passes lose records
//! unreported, and some sources (a command's output) cannot be read twice at all.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use super::batcher::Batcher;
use super::counters::Count;
use super::counters::Counters;
use super::filter::{Decision, Filter};
use super::mirror::{Bound, Deletes, deletes};
use super::repeats::{KeySet, KeysSeen, Repeats};
use super::{InvalidRow, MAX_SKIPPED_ROWS_KEPT, Shared};
use crate::config::{Behavior, FieldMap, SyncSpec};
use crate::sandbox::Operation;
use crate::source::partition::Partition;
use crate::source::spool::{SpoolReader, SpoolWriter, Spooled};
use crate::source::{self, Record, Row, RowReader};

/// Where a run's records come from.
pub enum Input {
    /// The sync's source. With a filter (the ledger), records the destination already
    /// holds are skipped (unless `send_all`) and permanent ones are held while unchanged.
    Source {
        filter: Option<Arc<dyn Filter>>,
        send_all: bool,
        /// Where the run keeps what it read until it is sent (the sync's state
        /// directory): an unlinked file, gone when the run ends.
        spool_dir: PathBuf,
        /// Only the keys of this partition: the others are skipped before the ledger
        /// sees them.
        partition: Option<Partition>,
        /// A mirror run may delete this many records, whatever `max_deletes` says
        /// (`--allow-deletes`).
        allow_deletes: Option<u64>,
    },
    /// Records chosen by the retry job, sent as they are.
    Records(Vec<Record>),
}

/// How a read ended, besides the records it sent on.
pub(crate) struct ReadEnd {
    /// The first rows skipped as unusable or repeated.
    pub skipped: Vec<InvalidRow>,
    /// Deletes a mirror run did not send, and why.
    pub withheld: Option<(u64, String)>,
    /// Every record was handed on.
    pub finished: bool,
}

/// Streams the input into batches on `tx`; runs on a blocking thread.
pub(super) fn read(
    input: Input,
    mut batcher: Batcher,
    shared: &Shared,
    tx: tokio::sync::mpsc::Sender<Vec<Record>>,
) -> Result<ReadEnd> {
    let reader = Reader {
        sync: &shared.spec,
        counters: &shared.counters,
        stop: &shared.stop,
        update_by_key: shared.update_by_key,
    };
    let mut finished = true;
    let end = read_with(input, &reader, &mut |record: Record| -> bool {
        finished = match batcher.push(record) {
            Some(batch) => send(&tx, batch, shared),
            None => true,
        };
        finished
    })?;
    if end.finished
        && finished
        && let Some(batch) = batcher.finish()
    {
        send(&tx, batch, shared);
    }
    Ok(end)
}

/// What reading needs of a run.
pub(crate) struct Reader<'a> {
    pub sync: &'a SyncSpec,
    pub counters: &'a Counters,
    pub stop: &'a CancellationToken,
    /// The connector updates by external key (`capabilities`).
    pub update_by_key: bool,
}

/// Reads the input, deciding each record as a run does, and hands every record to send to
/// `emit` (false: nothing more is taken). What a run and `sluice plan` share.
pub(crate) fn read_with(
    input: Input,
    reader: &Reader<'_>,
    emit: &mut dyn FnMut(Record) -> bool,
) -> Result<ReadEnd> {
    let Reader {
        sync,
        counters,
        stop,
        update_by_key,
    } = *reader;
    // Unusable rows are found by the read, repeated keys by the send pass: each list is in
    // line order, and the report shows the first rows of both, merged.
    let mut invalid = Vec::new();
    let mut repeated = Vec::new();
    // Every skipped row is logged, naming where it is; the first are kept for the report.
    let (origin, position) = (&sync.source.origin, sync.source.origin.position());
    let report = |kept: &mut Vec<InvalidRow>, line: u64, reason: String, count: Count| {
        counters.add(count, 1);
        tracing::info!(
            sync = %sync.name,
            file = origin.file().map(|f| f.display().to_string()),
            line,
            "skipped source {position} {line} of {}: {reason}",
            origin.describe()
        );
        if kept.len() < MAX_SKIPPED_ROWS_KEPT {
            let file = origin.file().map(Path::to_path_buf);
            kept.push(InvalidRow { line, reason, file });
        }
    };

    let mut withheld = None;
    let finished = match input {
        Input::Records(records) => {
            let mut finished = true;
            for record in records {
                if stop.is_cancelled() {
                    finished = false;
                    break;
                }
                counters.add(Count::Read, 1);
                if !emit(record) {
                    finished = false;
                    break;
                }
            }
            finished
        }
        Input::Source {
            filter,
            send_all,
            spool_dir,
            partition,
            allow_deletes,
        } => {
            let behavior = sync.behavior;
            let operation = behavior.operation();
            // An empty ledger has nothing to skip or hold: spare a lookup per record.
            let filter = filter.filter(|filter| !filter.is_empty());
            let decide = |key: &str, payload: &str| {
                let at_destination = |key| filter.as_ref().is_some_and(|f| f.at_destination(key));
                match behavior {
                    Behavior::Insert if at_destination(key) => return Ok(Decision::AtDestination),
                    Behavior::Update if !update_by_key && !at_destination(key) => {
                        return Ok(Decision::NotAtDestination);
                    }
                    _ => {}
                }
                match &filter {
                    Some(filter) => filter.decide(key, payload, send_all),
                    None => Ok(Decision::Send),
                }
            };
            // The state directory holds only the spool when the ledger is in a database.
            std::fs::create_dir_all(&spool_dir).with_context(|| {
                format!(
                    "creating the folder for the source's spool `{}`",
                    spool_dir.display()
                )
            })?;
            let rows = source::open(&sync.source, &spool_dir)?;
            let how = ReadHow {
                partition,
                fields: sync.fields.as_ref(),
                keep_keys: behavior == Behavior::Mirror,
            };
            let spooled = spool_source(rows, &how, &spool_dir, stop, decide, |line, why| {
                report(&mut invalid, line, why, Count::InvalidRows);
            })?;
            match spooled {
                None => false,
                Some(mut spooled) => {
                    let sent_all = loop {
                        if stop.is_cancelled() {
                            break false;
                        }
                        let Some((line, row)) = spooled.records.next_record()? else {
                            break true;
                        };
                        counters.add(Count::Read, 1);
                        if !spooled.wins(row.key()) {
                            let reason = format!(
                                "key `{}` appears again later in the source; the last row wins",
                                row.key()
                            );
                            report(&mut repeated, line, reason, Count::Duplicates);
                            continue;
                        }
                        let mut record = match row {
                            Spooled::Send(record) => record,
                            Spooled::Decided { decision, .. } => {
                                let count = match decision {
                                    Decision::Held => Count::Held,
                                    Decision::NotAtDestination => Count::NotAtDestination,
                                    Decision::AtDestination => Count::AtDestination,
                                    Decision::Unchanged | Decision::Send => Count::Unchanged,
                                };
                                counters.add(count, 1);
                                continue;
                            }
                        };
                        record.operation = operation;
                        if operation == Operation::Update
                            && let Some(filter) = &filter
                        {
                            record.destination_id = filter.destination_id(&record.key);
                        }
                        if !emit(record) {
                            break false;
                        }
                    };
                    if sent_all
                        && behavior == Behavior::Mirror
                        && let Some(filter) = &filter
                    {
                        // Read to its end and every record handed on: a mirror run deletes.
                        let keys = spooled.keys.take().expect("a mirror read keeps its keys");
                        let unusable = counters.get(Count::InvalidRows);
                        let bound = Bound {
                            max: sync.max_deletes,
                            allowed: allow_deletes,
                        };
                        match deletes(filter.as_ref(), &keys, partition, unusable, bound)? {
                            Deletes::Send(records) => {
                                let seen = |key: &str| keys.contains(key);
                                let forgotten = filter.forget_absent_failures(&seen, partition)?;
                                counters.add(Count::FailuresForgotten, forgotten);
                                drop(keys);
                                for record in records {
                                    if stop.is_cancelled() {
                                        break;
                                    }
                                    counters.add(Count::Deletes, 1);
                                    if !emit(record) {
                                        break;
                                    }
                                }
                            }
                            Deletes::Withheld { count, why } => {
                                tracing::warn!(sync = %sync.name, "{why}");
                                withheld = Some((count, why));
                            }
                        }
                    }
                    sent_all && !stop.is_cancelled()
                }
            }
        }
    };
    let mut skipped = invalid;
    skipped.append(&mut repeated);
    skipped.sort_by_key(|row| row.line);
    skipped.truncate(MAX_SKIPPED_ROWS_KEPT);
    Ok(ReadEnd {
        skipped,
        withheld,
        finished,
    })
}

/// How the source is read.
struct ReadHow<'a> {
    /// Only the keys of this partition are kept (and invalid rows are reported by
    /// partition 0 alone).
    partition: Option<Partition>,
    /// `[sync.fields]`: each record's payload as the connector sees it.
    fields: Option<&'a FieldMap>,
    /// Keep the set of keys read (a mirror run deletes the others).
    keep_keys: bool,
}

/// A source read to its end: its records in the spool, and its repeated keys.
struct SourceRead {
    records: SpoolReader,
    repeats: Repeats,
    keys: Option<KeySet>,
}

impl SourceRead {
    /// Whether the next row of the spool, of `key`, is the one sent: the last row of its
    /// key. Called once per row, in order.
    fn wins(&mut self, key: &str) -> bool {
        self.repeats.is_last(key)
    }
}

/// Reads every row of the source once: unusable rows go to `invalid` as they come,
/// records to a spool in `dir`, each mapped (`[sync.fields]`) and decided by `decide` as
/// it is read (a record not to send keeps only its key in the spool: a rerun with little
/// changed writes little). `None` when the run was stopped meanwhile.
fn spool_source(
    mut rows: Box<dyn RowReader>,
    how: &ReadHow<'_>,
    dir: &Path,
    stop: &CancellationToken,
    mut decide: impl FnMut(&str, &str) -> Result<Decision>,
    mut invalid: impl FnMut(u64, String),
) -> Result<Option<SourceRead>> {
    let partition = how.partition;
    let mut spool = SpoolWriter::new(dir)?;
    let mut seen = KeysSeen::default();
    let mut mapped: String;
    while let Some(row) = rows.next_row()? {
        if stop.is_cancelled() {
            return Ok(None);
        }
        match row {
            Row::Invalid { .. } if partition.is_some_and(|p| !p.reports_invalid_rows()) => {}
            Row::Record { key, .. } if partition.is_some_and(|p| !p.holds(key)) => {}
            Row::Invalid { line, reason } => invalid(line, reason),
            Row::Record { line, key, payload } => {
                seen.add(key);
                let payload = match how.fields {
                    None => payload,
                    Some(fields) => match fields.apply(payload) {
                        Ok(payload) => {
                            mapped = payload;
                            mapped.as_str()
                        }
                        Err(why) => {
                            invalid(line, format!("key `{key}`: {why}"));
                            continue;
                        }
                    },
                };
                match decide(key, payload)? {
                    Decision::Send => spool.push(line, key, payload)?,
                    decision => spool.push_decided(line, key, decision)?,
                }
            }
        }
    }
    let (repeats, keys) = seen.finish(how.keep_keys);
    Ok(Some(SourceRead {
        records: spool.finish()?,
        repeats,
        keys,
    }))
}

/// False when no worker will take the batch any more; its records stay pending.
fn send(tx: &tokio::sync::mpsc::Sender<Vec<Record>>, batch: Vec<Record>, shared: &Shared) -> bool {
    match tx.blocking_send(batch) {
        Ok(()) => true,
        Err(tokio::sync::mpsc::error::SendError(batch)) => {
            shared.leave_pending(batch, None);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SourceFormat, SourceSpec};

    const HOW: ReadHow<'static> = ReadHow {
        partition: None,
        fields: None,
        keep_keys: false,
    };

    /// The records sent, by line, and the rows skipped, after reading `spec`'s source once.
    fn winners(rows: Box<dyn RowReader>, dir: &Path) -> (Vec<(u64, String, String)>, Vec<u64>) {
        let mut invalid = Vec::new();
        let send = |_: &str, _: &str| Ok(Decision::Send);
        let stop = CancellationToken::new();
        let mut spooled = spool_source(rows, &HOW, dir, &stop, send, |line, _| invalid.push(line))
            .unwrap()
            .unwrap();
        let mut sent = Vec::new();
        while let Some((line, row)) = spooled.records.next_record().unwrap() {
            let Spooled::Send(record) = row else {
                panic!("every row is sent");
            };
            if spooled.wins(&record.key) {
                sent.push((line, record.key, record.payload));
            }
        }
        (sent, invalid)
    }

    fn spec(path: &Path) -> SourceSpec {
        SourceSpec {
            format: SourceFormat::Jsonl,
            origin: crate::config::SourceOrigin::File(path.to_path_buf()),
            key: "id".into(),
        }
    }

    #[test]
    fn the_last_row_of_a_key_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        let text = "{\"id\": \"a\", \"v\": 1}\n{\"id\": \"b\"}\nnope\n{\"id\": \"a\", \"v\": 2}\n{\"id\": 1}\n{\"id\": 1.0}\n";
        std::fs::write(&path, text).unwrap();
        let (sent, invalid) = winners(source::open(&spec(&path), dir.path()).unwrap(), dir.path());
        let keys: Vec<(u64, &str)> = sent.iter().map(|(l, k, _)| (*l, k.as_str())).collect();
        assert_eq!(keys, [(2, "b"), (4, "a"), (5, "1"), (6, "1.0")]);
        assert_eq!(sent[1].2, r#"{"id": "a", "v": 2}"#);
        assert_eq!(invalid, [3]);
    }

    /// Rows of a reader that replaces its file with another once it has given one row.
    struct ReplacedMidway {
        rows: Box<dyn RowReader>,
        replacement: Option<(PathBuf, PathBuf)>,
    }

    impl RowReader for ReplacedMidway {
        fn next_row(&mut self) -> Result<Option<Row<'_>>> {
            let row = self.rows.next_row()?;
            if let Some((from, to)) = self.replacement.take() {
                std::fs::rename(from, to).unwrap();
            }
            Ok(row)
        }
    }

    /// A source replaced (renamed over) while the run reads it: every record of the file
    /// that was opened is sent, with its own last-row-wins, and nothing of the other. The
    /// old two passes opened the path twice, and applied one file's repeated keys to the
    /// other's rows.
    #[test]
    fn a_source_replaced_during_the_run_is_read_as_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        let next = dir.path().join("next.jsonl");
        // Larger than the reader's buffer: most of it is read after the rename.
        let first: String = (0..20_000)
            .map(|i| format!("{{\"id\": \"k{}\", \"v\": {i}}}\n", i % 15_000))
            .collect();
        std::fs::write(&path, &first).unwrap();
        std::fs::write(
            &next,
            "{\"id\": \"k0\", \"v\": \"new\"}\n{\"id\": \"k0\"}\n",
        )
        .unwrap();
        let rows = ReplacedMidway {
            rows: source::open(&spec(&path), dir.path()).unwrap(),
            replacement: Some((next.clone(), path.clone())),
        };
        let (sent, invalid) = winners(Box::new(rows), dir.path());
        assert!(invalid.is_empty());
        assert!(std::fs::read_to_string(&path).unwrap().contains("new"));
        let expected: Vec<(u64, String, String)> = (0..20_000u64)
            .filter(|i| *i >= 5000)
            .map(|i| {
                let key = format!("k{}", i % 15_000);
                (
                    i + 1,
                    key.clone(),
                    format!("{{\"id\": \"{key}\", \"v\": {i}}}"),
                )
            })
            .collect();
        assert_eq!(sent.len(), 15_000);
        assert_eq!(sent, expected);
    }

    #[test]
    fn a_stopped_read_spools_nothing_more() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.jsonl");
        std::fs::write(&path, "{\"id\": 1}\n{\"id\": 2}\n").unwrap();
        let stop = CancellationToken::new();
        stop.cancel();
        let rows = source::open(&spec(&path), dir.path()).unwrap();
        assert!(
            spool_source(
                rows,
                &HOW,
                dir.path(),
                &stop,
                |_, _| Ok(Decision::Send),
                |_, _| {}
            )
            .unwrap()
            .is_none()
        );
    }
}
