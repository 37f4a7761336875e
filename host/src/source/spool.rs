//! Records kept on disk between reading a source and sending it. A source is read once
//! (a file may be replaced during a run, and a command's output cannot be read again),
//! but which row of a repeated key wins is known only at its end: the records wait in an
//! unlinked file, so memory stays flat however large the source.
//!
//! Each record is its line, the lengths of its key and payload (little-endian u64s), then
//! their bytes.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::Record;
use crate::fate::Decision;

/// The payload length that marks a row decided as it was read: unchanged, or held.
const UNCHANGED: u64 = u64::MAX;
const HELD: u64 = u64::MAX - 1;
const NOT_AT_DESTINATION: u64 = u64::MAX - 2;
const AT_DESTINATION: u64 = u64::MAX - 3;

/// A row read back from the spool.
pub enum Spooled {
    /// A record to send (if it is its key's last row).
    Send(Record),
    /// A row the ledger decided not to send as it was read: only its key was kept, since
    /// a later row of the same key may still be the one that counts.
    Decided { key: String, decision: Decision },
}

impl Spooled {
    pub fn key(&self) -> &str {
        match self {
            Spooled::Send(record) => &record.key,
            Spooled::Decided { key, .. } => key,
        }
    }
}

const BUFFER: usize = 256 * 1024;

pub struct SpoolWriter {
    out: BufWriter<File>,
    dir: PathBuf,
    records: u64,
}

impl SpoolWriter {
    /// A spool in `dir`, a file nobody else can see: the system removes it when it is
    /// closed, even after a crash.
    pub fn new(dir: &Path) -> Result<Self> {
        let file = tempfile::tempfile_in(dir).with_context(|| {
            format!(
                "creating a spool file for the source in `{}`",
                dir.display()
            )
        })?;
        Ok(SpoolWriter {
            out: BufWriter::with_capacity(BUFFER, file),
            dir: dir.to_path_buf(),
            records: 0,
        })
    }

    pub fn push(&mut self, line: u64, key: &str, payload: &str) -> Result<()> {
        self.write(line, key, payload.len() as u64, payload)
    }

    /// A row not to send (`Unchanged` or `Held`): its key only, not its payload.
    pub fn push_decided(&mut self, line: u64, key: &str, decision: Decision) -> Result<()> {
        let mark = match decision {
            Decision::Unchanged => UNCHANGED,
            Decision::Held => HELD,
            Decision::NotAtDestination => NOT_AT_DESTINATION,
            Decision::AtDestination => AT_DESTINATION,
            Decision::Send => bail!("a record to send is spooled with its payload"),
        };
        self.write(line, key, mark, "")
    }

    fn write(&mut self, line: u64, key: &str, mark: u64, payload: &str) -> Result<()> {
        let mut head = [0u8; 24];
        head[..8].copy_from_slice(&line.to_le_bytes());
        head[8..16].copy_from_slice(&(key.len() as u64).to_le_bytes());
        head[16..].copy_from_slice(&mark.to_le_bytes());
        self.out
            .write_all(&head)
            .and_then(|()| self.out.write_all(key.as_bytes()))
            .and_then(|()| self.out.write_all(payload.as_bytes()))
            .with_context(|| {
                format!(
                    "writing the source's spool file in `{}`",
                    self.dir.display()
                )
            })?;
        self.records += 1;
        Ok(())
    }

    /// The records written, from the first.
    pub fn finish(self) -> Result<SpoolReader> {
        let context = || {
            format!(
                "reading back the source's spool file in `{}`",
                self.dir.display()
            )
        };
        let mut file = self
            .out
            .into_inner()
            .map_err(|err| err.into_error())
            .with_context(context)?;
        file.seek(SeekFrom::Start(0)).with_context(context)?;
        Ok(SpoolReader {
            input: BufReader::with_capacity(BUFFER, file),
            left: self.records,
        })
    }
}

pub struct SpoolReader {
    input: BufReader<File>,
    left: u64,
}

impl SpoolReader {
    /// The next record and its line.
    pub fn next_record(&mut self) -> Result<Option<(u64, Spooled)>> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let mut head = [0u8; 24];
        self.input
            .read_exact(&mut head)
            .context("reading the source's spool file")?;
        let number = |at: usize| u64::from_le_bytes(head[at..at + 8].try_into().expect("8 bytes"));
        let line = number(0);
        let key = self.text(number(8))?;
        let row = match number(16) {
            UNCHANGED => Spooled::Decided {
                key,
                decision: Decision::Unchanged,
            },
            HELD => Spooled::Decided {
                key,
                decision: Decision::Held,
            },
            NOT_AT_DESTINATION => Spooled::Decided {
                key,
                decision: Decision::NotAtDestination,
            },
            AT_DESTINATION => Spooled::Decided {
                key,
                decision: Decision::AtDestination,
            },
            len => Spooled::Send(Record::new(key, self.text(len)?)),
        };
        Ok(Some((line, row)))
    }

    fn text(&mut self, len: u64) -> Result<String> {
        let Ok(len) = usize::try_from(len) else {
            bail!("the source's spool file is damaged");
        };
        let mut bytes = vec![0; len];
        self.input
            .read_exact(&mut bytes)
            .context("reading the source's spool file")?;
        String::from_utf8(bytes).context("the source's spool file is damaged")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_come_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = SpoolWriter::new(dir.path()).unwrap();
        let big = "é".repeat(200_000);
        spool.push(3, "k1", r#"{"id":"k1"}"#).unwrap();
        spool.push(7, "", "").unwrap();
        spool.push(u64::MAX, "k3", &big).unwrap();
        spool.push_decided(9, "k4", Decision::Unchanged).unwrap();
        spool.push_decided(10, "k5", Decision::Held).unwrap();
        assert!(spool.push_decided(11, "k6", Decision::Send).is_err());
        // Unlinked: nothing is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut reader = spool.finish().unwrap();
        let mut out = Vec::new();
        while let Some((line, row)) = reader.next_record().unwrap() {
            out.push(match row {
                Spooled::Send(record) => (line, record.key, record.payload),
                Spooled::Decided { key, decision } => (line, key, format!("<{decision:?}>")),
            });
        }
        assert_eq!(
            out,
            [
                (3, "k1".to_string(), r#"{"id":"k1"}"#.to_string()),
                (7, String::new(), String::new()),
                (u64::MAX, "k3".to_string(), big),
                (9, "k4".to_string(), "<Unchanged>".to_string()),
                (10, "k5".to_string(), "<Held>".to_string()),
            ]
        );
    }
}
