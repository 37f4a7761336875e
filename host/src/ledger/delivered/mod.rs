//! The delivered set of one sync as a log: what the destination confirmed, appended per
//! verdict to segment files and compacted into a snapshot. A run reads it sequentially
//! at its start (change detection needs every key's confirmed payload hash, nothing
//! more), and a delivery costs an append to a buffer instead of a key update.
//!
//! Files, in the sync's folder (`seq` is a 16-digit hexadecimal number):
//! - `snapshot-<seq>`: the state up to (not including) segment `seq`, each key once.
//! - `segment-<seq>`: the deliveries of one process's runs, in order.
//! - `*.tmp`: a snapshot being written; removed on open (a crash left it).
//!
//! The state is the newest snapshot, then every segment at or after its `seq`, in
//! order. A snapshot is written whole under a temporary name, made durable, then renamed,
//! so a crash during compaction leaves the old state or the new one, never a mix; the
//! files it replaces are deleted only after that.
//!
//! Durability: appends go through a buffer and are made durable (`fdatasync`) at most
//! `sync_interval` apart, and whenever the ledger is flushed (before a run reports).
//! A crash loses at most the deliveries since the last sync; their records are simply
//! sent again. A record is in the log only after the destination confirmed it.

mod file;
mod frame;
mod record;

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use self::file::{HEADER_ONLY_MAX, read_file, read_header, record_count, repair_tail, sync_dir};
use self::frame::{CHUNK, MAGIC, write_frame};
pub use self::record::{
    Delivered, Delivery, Fingerprint, Header, Index, States, fold, forget_deleted,
};
use super::deliveries::Deliveries;

/// Why the log cannot be read or written. `Damaged` names the file and the offset.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{doing} `{}`: {source}", path.display())]
    Io {
        doing: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("`{}` is damaged at byte {offset}: {what}", path.display())]
    Damaged {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    /// The state database refused or lost a read or a write, in its words.
    #[error("{0}")]
    Database(String),
    /// A write refused: this worker's lease has moved on (see the state database's
    /// fencing).
    #[error("{0}")]
    Fenced(String),
}

impl LogError {
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match self {
            LogError::Io { source, .. } => Some(source),
            LogError::Damaged { .. } | LogError::Database(_) | LogError::Fenced(_) => None,
        }
    }
}

type Result<T, E = LogError> = std::result::Result<T, E>;

fn io<T>(doing: &'static str, path: &Path, result: std::io::Result<T>) -> Result<T> {
    result.map_err(|source| LogError::Io {
        doing,
        path: path.to_path_buf(),
        source,
    })
}

/// The kinds of file in a log's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Snapshot,
    Segment,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Snapshot => "snapshot-",
            Kind::Segment => "segment-",
        }
    }
}

/// The files that make the state, oldest first.
#[derive(Debug, Default)]
struct Files {
    snapshot: Option<(u64, PathBuf)>,
    segments: Vec<(u64, PathBuf)>,
}

impl Files {
    fn next_seq(&self) -> u64 {
        let last_segment = self.segments.last().map(|(seq, _)| seq + 1);
        let snapshot = self.snapshot.as_ref().map(|(seq, _)| *seq);
        last_segment.max(snapshot).unwrap_or(0).max(1)
    }

    fn segment_bytes(&self) -> u64 {
        self.segments
            .iter()
            .filter_map(|(_, p)| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// The segment this process appends to.
struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    last_sync: Instant,
    /// Written since the last sync.
    dirty: bool,
}

/// What a compaction did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    pub keys: u64,
    pub segments: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The delivered log of one sync: one folder, held by one process (the ledger's lock).
pub struct DeliveredLog {
    dir: PathBuf,
    sync_interval: Duration,
    writer: Mutex<Option<Writer>>,
    /// The destination the state is about, once known (read or set by a run).
    fingerprint: Mutex<Option<Option<Fingerprint>>>,
}

impl DeliveredLog {
    /// Opens the log in `dir` (created if missing): removes what a crash during
    /// compaction left, and cuts a write torn by a crash off the last segment (saying
    /// where), so that every later segment follows a clean one.
    pub fn open(dir: &Path, sync_interval: Duration) -> Result<DeliveredLog> {
        io("creating the delivered log", dir, fs::create_dir_all(dir))?;
        let log = DeliveredLog {
            dir: dir.to_path_buf(),
            sync_interval,
            writer: Mutex::new(None),
            fingerprint: Mutex::new(None),
        };
        let files = log.files()?;
        if let Some((_, last)) = files.segments.last() {
            repair_tail(last)?;
        }
        Ok(log)
    }

    /// Lists the folder: the newest snapshot and the segments it does not cover. Older
    /// snapshots, covered segments and temporary files are leftovers of a compaction
    /// that a crash cut short after (or before) its rename: they are removed.
    fn files(&self) -> Result<Files> {
        let mut snapshots = Vec::new();
        let mut segments = Vec::new();
        let listing = io("reading the folder", &self.dir, fs::read_dir(&self.dir))?;
        for item in listing {
            let item = io("reading the folder", &self.dir, item)?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                io("removing", &path, fs::remove_file(&path))?;
                continue;
            }
            let parsed = [Kind::Snapshot, Kind::Segment]
                .into_iter()
                .find_map(|kind| {
                    let seq = name.strip_prefix(kind.prefix())?;
                    (seq.len() == 16)
                        .then(|| u64::from_str_radix(seq, 16).ok())
                        .flatten()
                        .map(|seq| (kind, seq))
                });
            match parsed {
                Some((Kind::Snapshot, seq)) => snapshots.push((seq, path)),
                Some((Kind::Segment, seq)) => segments.push((seq, path)),
                None => {}
            }
        }
        snapshots.sort();
        segments.sort();
        let snapshot = snapshots.pop();
        for (_, old) in &snapshots {
            io("removing", old, fs::remove_file(old))?;
        }
        if let Some((covered, _)) = &snapshot {
            for (_, old) in segments.iter().filter(|(seq, _)| seq < covered) {
                io("removing", old, fs::remove_file(old))?;
            }
            segments.retain(|(seq, _)| seq >= covered);
        }
        Ok(Files { snapshot, segments })
    }

    fn path(&self, kind: Kind, seq: u64) -> PathBuf {
        self.dir.join(format!("{}{seq:016x}", kind.prefix()))
    }

    /// Reads the whole state in order: `visit` sees every record, the oldest first (a
    /// key's later records supersede its earlier ones). Returns the fingerprint of the
    /// destination the state is about.
    fn read_all(&self, visit: &mut dyn FnMut(&Delivery<'_>)) -> Result<Option<Fingerprint>> {
        self.read_parts(&mut |record, _| visit(record))
    }

    /// [`Self::read`], saying of each record whether it comes from the snapshot.
    fn read_parts(
        &self,
        visit: &mut dyn FnMut(&Delivery<'_>, bool),
    ) -> Result<Option<Fingerprint>> {
        // Appends wait while the log is read, and what they buffered is written out
        // first: a frame half in the buffer would read as a torn write.
        let mut writer = self.writer.lock().unwrap();
        if let Some(w) = writer.as_mut() {
            io("writing", &w.path, w.out.flush())?;
        }
        let files = self.files()?;
        let mut fingerprint = None;
        let snapshot = files.snapshot.iter().map(|f| (f, true));
        let paths = snapshot.chain(files.segments.iter().map(|f| (f, false)));
        for (i, ((_, path), in_snapshot)) in paths.enumerate() {
            let header = read_file(path, &mut |record| visit(record, in_snapshot))?;
            if i == 0 {
                fingerprint = header.fingerprint;
            }
        }
        drop(writer);
        *self.fingerprint.lock().unwrap() = Some(fingerprint);
        Ok(fingerprint)
    }

    /// Change detection's view, and the destination it is about: the snapshot's keys
    /// (each once) go straight into the sorted part of the index.
    fn snapshot_index(&self) -> Result<(Index, Option<Fingerprint>)> {
        // Reserved from the snapshot's size (a record takes at least 20 bytes), so the
        // vector does not grow while read; `seal` gives back the rest.
        let files = self.files()?;
        let snapshot_bytes = match &files.snapshot {
            Some((_, path)) => io("reading", path, fs::metadata(path))?.len(),
            None => 0,
        };
        let mut index = Index::with_capacity((snapshot_bytes / 20) as usize);
        let fingerprint = self.read_parts(&mut |record, in_snapshot| {
            if in_snapshot {
                index.insert_base(record);
            } else {
                index.insert(record);
            }
        })?;
        index.seal();
        Ok((index, fingerprint))
    }

    /// The fingerprint the state is about, reading only a header when no run read the
    /// log yet.
    fn current_fingerprint(&self) -> Result<Option<Fingerprint>> {
        if let Some(known) = *self.fingerprint.lock().unwrap() {
            return Ok(known);
        }
        let files = self.files()?;
        let first = files.snapshot.iter().chain(&files.segments).next();
        let fingerprint = match first {
            Some((_, path)) => read_header(path)?.fingerprint,
            None => None,
        };
        *self.fingerprint.lock().unwrap() = Some(fingerprint);
        Ok(fingerprint)
    }

    /// Appends the deliveries of one verdict. Durable after the next [`Self::sync`], or
    /// within `sync_interval` of this call when appends keep coming.
    fn append_frame(&self, records: &[Delivery<'_>]) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut body = Vec::with_capacity(records.len() * 64);
        for record in records {
            body = postcard::to_extend(record, body).expect("a delivery always encodes");
        }
        let fingerprint = self.current_fingerprint()?;
        let mut writer = self.writer.lock().unwrap();
        if writer.is_none() {
            *writer = Some(self.new_segment(fingerprint)?);
        }
        let w = writer.as_mut().unwrap();
        io("appending to", &w.path, write_frame(&mut w.out, &body))?;
        w.dirty = true;
        if w.last_sync.elapsed() >= self.sync_interval {
            sync_writer(w)?;
        }
        Ok(())
    }

    fn new_segment(&self, fingerprint: Option<Fingerprint>) -> Result<Writer> {
        let seq = self.files()?.next_seq();
        let path = self.path(Kind::Segment, seq);
        let file = io(
            "creating",
            &path,
            OpenOptions::new().create_new(true).append(true).open(&path),
        )?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let header = postcard::to_stdvec(&Header { fingerprint }).expect("a header encodes");
        io("writing", &path, out.write_all(&MAGIC))?;
        io("writing", &path, write_frame(&mut out, &header))?;
        // The segment's name must survive a crash for its records to count.
        sync_dir(&self.dir)?;
        Ok(Writer {
            path,
            out,
            last_sync: Instant::now(),
            dirty: true,
        })
    }

    /// Makes every append so far durable.
    fn sync_all(&self) -> Result<()> {
        match self.writer.lock().unwrap().as_mut() {
            Some(w) => sync_writer(w),
            None => Ok(()),
        }
    }

    /// Ends this process's segment (made durable); the next append starts a new one.
    fn end_segment(&self) -> Result<()> {
        let mut writer = self.writer.lock().unwrap();
        if let Some(w) = writer.as_mut() {
            sync_writer(w)?;
        }
        *writer = None;
        Ok(())
    }

    /// Forgets every delivery: the state is now about the destination `fingerprint`,
    /// which has confirmed nothing yet. Written as an empty snapshot, so a crash leaves
    /// the old state or the new one.
    fn forget(&self, fingerprint: Fingerprint) -> Result<()> {
        self.end_segment()?;
        let seq = self.files()?.next_seq();
        self.write_empty_snapshot(seq, Some(fingerprint))?;
        self.files()?;
        *self.fingerprint.lock().unwrap() = Some(Some(fingerprint));
        Ok(())
    }

    /// Names the destination of a state that has none (a new log, or one moved from an
    /// older ledger) without forgetting it: the state is rewritten as a snapshot with
    /// the fingerprint.
    fn name_destination(&self, fingerprint: Fingerprint) -> Result<()> {
        self.end_segment()?;
        let files = self.files()?;
        if files.snapshot.is_none() && files.segments.is_empty() {
            return self.forget(fingerprint);
        }
        self.rewrite(&files, Some(fingerprint))?;
        *self.fingerprint.lock().unwrap() = Some(Some(fingerprint));
        Ok(())
    }
    /// Merges the snapshot and the segments into a new snapshot when the segments are
    /// large next to it (at least a quarter of its size, or more than eight of them),
    /// then deletes them whole. A first load (one segment, no snapshot) becomes the
    /// snapshot by a rename: a run delivers each key at most once, so nothing in it is
    /// superseded.
    fn compact_when_worth_it(&self) -> Result<Option<Compacted>> {
        self.end_segment()?;
        let files = self.files()?;
        let segment_bytes = files.segment_bytes();
        if files.segments.is_empty() {
            return Ok(None);
        }
        let snapshot_bytes = match &files.snapshot {
            Some((_, path)) => io("reading", path, fs::metadata(path))?.len(),
            None => 0,
        };
        let holds_nothing = match &files.snapshot {
            Some((_, path)) => snapshot_bytes <= HEADER_ONLY_MAX && record_count(path)? == 0,
            None => true,
        };
        if holds_nothing && files.segments.len() == 1 {
            let (seq, segment) = &files.segments[0];
            let target = self.path(Kind::Snapshot, seq + 1);
            io("renaming", segment, fs::rename(segment, &target))?;
            sync_dir(&self.dir)?;
            self.files()?;
            return Ok(Some(Compacted {
                keys: record_count(&target)?,
                segments: 1,
                bytes_before: segment_bytes + snapshot_bytes,
                bytes_after: segment_bytes,
            }));
        }
        if segment_bytes * 4 < snapshot_bytes && files.segments.len() <= 8 {
            return Ok(None);
        }
        self.compact(files, snapshot_bytes + segment_bytes)
            .map(Some)
    }

    fn compact(&self, files: Files, bytes_before: u64) -> Result<Compacted> {
        let fingerprint = self.current_fingerprint()?;
        let (path, keys) = self.rewrite(&files, fingerprint)?;
        let bytes_after = io("reading", &path, fs::metadata(&path))?.len();
        Ok(Compacted {
            keys,
            segments: files.segments.len(),
            bytes_before,
            bytes_after,
        })
    }

    /// Writes the state of `files` as one new snapshot about `fingerprint`, then removes
    /// what it covers; its path and how many keys it holds. The oldest file (the
    /// snapshot, or else the first segment) is streamed, each of its keys merged with what
    /// the later segments say of it: only those later segments are held in memory, so a
    /// compaction after a few changes costs what the changes cost, not the whole state.
    fn rewrite(&self, files: &Files, fingerprint: Option<Fingerprint>) -> Result<(PathBuf, u64)> {
        let mut paths = files.snapshot.iter().chain(&files.segments).map(|(_, p)| p);
        let oldest = paths.next();
        let mut newer = States::new();
        for path in paths {
            read_file(path, &mut |record| fold(&mut newer, record))?;
        }
        let mut out =
            SnapshotWriter::create(self.path(Kind::Snapshot, files.next_seq()), fingerprint)?;
        if let Some(oldest) = oldest {
            let mut failed = None;
            read_file(oldest, &mut |record| {
                if failed.is_some() {
                    return;
                }
                let written = match newer.remove(record.key) {
                    Some(later) if later.is_deleted() => Ok(()),
                    Some(later) => {
                        let mut state = Delivered::first(record);
                        state.then_all(later);
                        out.push(&state.as_delivery(record.key))
                    }
                    None => out.push(record),
                };
                failed = written.err();
            })?;
            if let Some(err) = failed {
                return Err(err);
            }
        }
        for (key, state) in &newer {
            if !state.is_deleted() {
                out.push(&state.as_delivery(key))?;
            }
        }
        let keys = out.records;
        let path = out.finish(&self.dir)?;
        // Removes what the new snapshot covers.
        self.files()?;
        Ok((path, keys))
    }

    /// Writes an empty snapshot `seq` about `fingerprint`.
    fn write_empty_snapshot(&self, seq: u64, fingerprint: Option<Fingerprint>) -> Result<PathBuf> {
        SnapshotWriter::create(self.path(Kind::Snapshot, seq), fingerprint)?.finish(&self.dir)
    }
}

/// A snapshot being written: under a temporary name, in chunks of records, made durable
/// and renamed into place by [`SnapshotWriter::finish`].
struct SnapshotWriter {
    path: PathBuf,
    tmp: PathBuf,
    out: BufWriter<File>,
    chunk: Vec<u8>,
    records: u64,
}

impl SnapshotWriter {
    fn create(path: PathBuf, fingerprint: Option<Fingerprint>) -> Result<SnapshotWriter> {
        let tmp = path.with_extension("tmp");
        let file = io("creating", &tmp, File::create(&tmp))?;
        let mut out = BufWriter::with_capacity(256 * 1024, file);
        let header = postcard::to_stdvec(&Header { fingerprint }).expect("a header encodes");
        io("writing", &tmp, out.write_all(&MAGIC))?;
        io("writing", &tmp, write_frame(&mut out, &header))?;
        Ok(SnapshotWriter {
            path,
            tmp,
            out,
            chunk: Vec::with_capacity(CHUNK + 1024),
            records: 0,
        })
    }

    fn push(&mut self, record: &Delivery<'_>) -> Result<()> {
        let chunk = std::mem::take(&mut self.chunk);
        self.chunk = postcard::to_extend(record, chunk).expect("a delivery always encodes");
        self.records += 1;
        if self.chunk.len() >= CHUNK {
            io(
                "writing",
                &self.tmp,
                write_frame(&mut self.out, &self.chunk),
            )?;
            self.chunk.clear();
        }
        Ok(())
    }

    /// Writes the rest, makes the file durable, renames it into place and makes the
    /// rename durable.
    fn finish(mut self, dir: &Path) -> Result<PathBuf> {
        if !self.chunk.is_empty() {
            io(
                "writing",
                &self.tmp,
                write_frame(&mut self.out, &self.chunk),
            )?;
        }
        let file = io(
            "writing",
            &self.tmp,
            self.out.into_inner().map_err(|e| e.into_error()),
        )?;
        io("syncing", &self.tmp, file.sync_all())?;
        io("renaming", &self.tmp, fs::rename(&self.tmp, &self.path))?;
        sync_dir(dir)?;
        Ok(self.path)
    }
}

fn sync_writer(w: &mut Writer) -> Result<()> {
    if w.dirty {
        io("writing", &w.path, w.out.flush())?;
        io("syncing", &w.path, w.out.get_ref().sync_data())?;
        w.dirty = false;
    }
    w.last_sync = Instant::now();
    Ok(())
}

impl Deliveries for DeliveredLog {
    fn read(&self, visit: &mut dyn FnMut(&Delivery<'_>)) -> Result<Option<Fingerprint>> {
        self.read_all(visit)
    }

    fn destination(&self) -> Result<Option<Fingerprint>> {
        self.current_fingerprint()
    }

    fn append(&self, records: &[Delivery<'_>]) -> Result<()> {
        self.append_frame(records)
    }

    fn sync(&self) -> Result<()> {
        self.sync_all()
    }

    fn reset(&self, fingerprint: Fingerprint) -> Result<()> {
        self.forget(fingerprint)
    }

    fn stamp(&self, fingerprint: Fingerprint) -> Result<()> {
        self.name_destination(fingerprint)
    }

    fn compact_if_worth_it(&self) -> Result<Option<Compacted>> {
        self.compact_when_worth_it()
    }

    fn close_segment(&self) -> Result<()> {
        self.end_segment()
    }

    fn index(&self) -> Result<(Index, Option<Fingerprint>)> {
        self.snapshot_index()
    }
}

#[cfg(test)]
mod tests;
