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
        let mut head = [0u8; 24];
        head[..8].copy_from_slice(&line.to_le_bytes());
        head[8..16].copy_from_slice(&(key.len() as u64).to_le_bytes());
        head[16..].copy_from_slice(&(payload.len() as u64).to_le_bytes());
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
    pub fn next_record(&mut self) -> Result<Option<(u64, Record)>> {
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
        let payload = self.text(number(16))?;
        Ok(Some((line, Record { key, payload })))
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
        // Unlinked: nothing is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let mut reader = spool.finish().unwrap();
        let mut out = Vec::new();
        while let Some((line, record)) = reader.next_record().unwrap() {
            out.push((line, record.key, record.payload));
        }
        assert_eq!(
            out,
            [
                (3, "k1".to_string(), r#"{"id":"k1"}"#.to_string()),
                (7, String::new(), String::new()),
                (u64::MAX, "k3".to_string(), big),
            ]
        );
    }
}
