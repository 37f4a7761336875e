//! The files of the delivered log, one at a time: reading a file's header and records,
//! cutting a torn end off the last segment, and making a new name durable.

use std::fs::{self, File, OpenOptions};
use std::io::BufReader;
use std::path::Path;

use super::frame::{Ending, Frames, MAGIC};
use super::{Delivery, Header, LogError, Result, io};

/// Makes a rename or a new file in `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> Result<()> {
    let handle = io("opening", dir, File::open(dir))?;
    io("syncing", dir, handle.sync_all())
}

/// A file's frames, or how it ends when it does not start like a file of the log.
type Opened = std::result::Result<Frames<BufReader<File>>, Ending>;

/// A file of the log, checked for its magic: its frames, or how it ends when it does not
/// start like one; and its length.
fn frames_of(path: &Path) -> Result<(Opened, u64)> {
    let file = io("opening", path, File::open(path))?;
    let len = io("reading", path, file.metadata())?.len();
    let input = BufReader::with_capacity(256 * 1024, file);
    Ok((io("reading", path, Frames::new(input, len))?, len))
}

/// Opens a file of the log for reading its frames.
fn open(path: &Path) -> Result<Frames<BufReader<File>>> {
    match frames_of(path)?.0 {
        Ok(frames) => Ok(frames),
        Err(ending) => Err(ending_error(path, ending).expect("not clean")),
    }
}

/// How a file's end is said when it must be clean.
fn ending_error(path: &Path, ending: Ending) -> Option<LogError> {
    let damaged = |offset: u64, what: String| LogError::Damaged {
        path: path.to_path_buf(),
        offset,
        what,
    };
    match ending {
        Ending::Clean => None,
        Ending::Torn { offset } => Some(damaged(offset, "the file ends inside a frame".into())),
        Ending::Damaged { offset, what } => Some(damaged(offset, what)),
    }
}

/// The header: the first frame of `frames`.
fn header(path: &Path, frames: &mut Frames<BufReader<File>>) -> Result<Header> {
    let header_at = MAGIC.len() as u64;
    let damaged = |what: String| LogError::Damaged {
        path: path.to_path_buf(),
        offset: header_at,
        what,
    };
    match io("reading", path, frames.next())? {
        Some(body) => {
            postcard::from_bytes(body).map_err(|e| damaged(format!("an unreadable header: {e}")))
        }
        None => Err(ending_error(path, frames.ending.clone())
            .unwrap_or_else(|| damaged("no header".into()))),
    }
}

/// Reads one file: its header, then every record to `visit`. A torn end is said as
/// damage here: only [`repair_tail`] may cut it, and only on the last segment.
pub(super) fn read_file(path: &Path, visit: &mut impl FnMut(&Delivery<'_>)) -> Result<Header> {
    let mut frames = open(path)?;
    let header = header(path, &mut frames)?;
    loop {
        let at = frames.position();
        let Some(mut body) = io("reading", path, frames.next())? else {
            break;
        };
        while !body.is_empty() {
            let (record, rest) =
                postcard::take_from_bytes::<Delivery<'_>>(body).map_err(|e| LogError::Damaged {
                    path: path.to_path_buf(),
                    offset: at,
                    what: format!("an unreadable record: {e}"),
                })?;
            visit(&record);
            body = rest;
        }
    }
    match ending_error(path, frames.ending) {
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
    let mut frames = open(path)?;
    header(path, &mut frames)
}

/// Cuts a write torn by a crash off the end of a segment, saying so with the file and
/// the offset; damage anywhere (a bad checksum with data after it) is an error.
pub(super) fn repair_tail(path: &Path) -> Result<()> {
    let (frames, len) = frames_of(path)?;
    let ending = match frames {
        Ok(mut frames) => {
            while io("reading", path, frames.next())?.is_some() {}
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
                cut = len - offset,
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
