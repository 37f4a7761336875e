//! The files of the delivered log, one at a time: reading a file's header and records,
//! cutting a torn end off the last segment, and making a new name durable.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

use super::frame::{Ending, Frames, MAGIC};
use super::{Delivery, Header, LogError, Result, io};

/// Makes a rename or a new file in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    let handle = io("opening", dir, File::open(dir))?;
    io("syncing", dir, handle.sync_all())
}

/// Reads one file: its header, then every record to `visit`. A torn end is said as
/// damage here: only [`repair_tail`] may cut it, and only on the last segment.
pub(super) fn read_file(path: &Path, visit: &mut impl FnMut(&Delivery<'_>)) -> Result<Header> {
    let bytes = io("reading", path, fs::read(path))?;
    let damaged = |offset: u64, what: String| LogError::Damaged {
        path: path.to_path_buf(),
        offset,
        what,
    };
    let ending_error = |ending: Ending| match ending {
        Ending::Clean => None,
        Ending::Torn { offset } => Some(damaged(offset, "the file ends inside a frame".into())),
        Ending::Damaged { offset, what } => Some(damaged(offset, what)),
    };
    let mut frames = match Frames::new(&bytes) {
        Ok(frames) => frames,
        Err(ending) => return Err(ending_error(ending).expect("not clean")),
    };
    let header_at = MAGIC.len() as u64;
    let header: Header = match frames.next() {
        Some(body) => postcard::from_bytes(body)
            .map_err(|e| damaged(header_at, format!("an unreadable header: {e}")))?,
        None => {
            return Err(ending_error(frames.ending.clone())
                .unwrap_or_else(|| damaged(header_at, "no header".into())));
        }
    };
    loop {
        let at = frames.position() as u64;
        let Some(mut body) = frames.next() else {
            break;
        };
        while !body.is_empty() {
            let (record, rest) = postcard::take_from_bytes::<Delivery<'_>>(body)
                .map_err(|e| damaged(at, format!("an unreadable record: {e}")))?;
            visit(&record);
            body = rest;
        }
    }
    match ending_error(frames.ending) {
        Some(err) => Err(err),
        None => Ok(header),
    }
}

/// A file that holds only a header is at most this large.
pub(super) const HEADER_ONLY_MAX: u64 = 64;

/// How many records a file holds.
pub(super) fn record_count(path: &Path) -> Result<u64> {
    let mut n = 0;
    read_file(path, &mut |_| n += 1)?;
    Ok(n)
}

/// Only the header of a file.
pub(super) fn read_header(path: &Path) -> Result<Header> {
    let bytes = io("reading", path, fs::read(path))?;
    let mut frames = Frames::new(&bytes).map_err(|_| LogError::Damaged {
        path: path.to_path_buf(),
        offset: 0,
        what: "not a file of Sluice's delivered log".into(),
    })?;
    let body = frames.next().ok_or_else(|| LogError::Damaged {
        path: path.to_path_buf(),
        offset: MAGIC.len() as u64,
        what: "no header".into(),
    })?;
    postcard::from_bytes(body).map_err(|e| LogError::Damaged {
        path: path.to_path_buf(),
        offset: MAGIC.len() as u64,
        what: format!("an unreadable header: {e}"),
    })
}

/// Cuts a write torn by a crash off the end of a segment, saying so with the file and
/// the offset; damage anywhere (a bad checksum with data after it) is an error.
pub(super) fn repair_tail(path: &Path) -> Result<()> {
    let bytes = io("reading", path, fs::read(path))?;
    let ending = match Frames::new(&bytes) {
        Ok(mut frames) => {
            frames.by_ref().for_each(drop);
            frames.ending
        }
        Err(ending) => ending,
    };
    match ending {
        Ending::Clean => Ok(()),
        Ending::Torn { offset } => {
            tracing::warn!(
                file = %path.display(),
                offset,
                cut = bytes.len() as u64 - offset,
                "the delivered log ends in a write cut short by a crash: cutting it off \
                 (the records in it are sent again)"
            );
            if offset <= MAGIC.len() as u64 {
                // Not even its header was written: the segment held nothing.
                io("removing", path, fs::remove_file(path))?;
            } else {
                let file = io("opening", path, OpenOptions::new().write(true).open(path))?;
                io("cutting", path, file.set_len(offset))?;
                io("syncing", path, file.sync_all())?;
            }
            Ok(())
        }
        Ending::Damaged { offset, what } => Err(LogError::Damaged {
            path: path.to_path_buf(),
            offset,
            what,
        }),
    }
}
