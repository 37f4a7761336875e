//! Reading records from the source, one row at a time, in one pass: a source is never
//! loaded whole, never opened twice, and a row that cannot become a record is reported
//! with its line while the rows after it are read.

mod command;
mod csv;
mod jsonl;
mod lines;
pub mod partition;
mod postgres;
#[cfg(test)]
mod properties;
pub mod spool;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::config::{SourceFormat, SourceOrigin, SourceSpec};

/// A record as read from the source: its key, and its fields as a serialized JSON
/// object. The same type crosses into connectors, so a batch is never copied to convert.
pub use crate::sandbox::SourceRecord as Record;

/// One row of the source: a record, or a row that cannot become one (reported, skipped).
/// A record borrows from the reader until the next row is asked for, so the reader copies
/// nothing it does not have to.
#[derive(Debug)]
pub enum Row<'a> {
    Record {
        line: u64,
        key: &'a str,
        /// Exactly one JSON object.
        payload: &'a str,
    },
    Invalid {
        line: u64,
        reason: String,
    },
}

/// The rows of a source, in order.
pub trait RowReader: Send {
    /// The next row; `None` at the end. An error only when the source cannot be read.
    fn next_row(&mut self) -> Result<Option<Row<'_>>>;
}

/// How much a source is read ahead: rows are short and read in order.
const READ_BUFFER: usize = 256 * 1024;

/// Opens the source: a file, or a command's output. `scratch` is a directory for what a
/// reader must keep on disk (the lines after an unclosed CSV quote).
pub fn open(spec: &SourceSpec, scratch: &Path) -> Result<Box<dyn RowReader>> {
    match &spec.origin {
        SourceOrigin::File(path) => open_file(spec, path, scratch),
        SourceOrigin::Postgres { url_env, query } => Ok(Box::new(postgres::QueryRows::start(
            url_env, query, &spec.key,
        )?)),
        SourceOrigin::Command {
            argv,
            dir,
            withheld,
        } => {
            let output = command::CommandOutput::start(argv, dir, withheld)?;
            let input = BufReader::with_capacity(READ_BUFFER, output);
            reader(
                &spec.format,
                &spec.key,
                Box::new(input),
                command::describe(argv),
                scratch,
            )
        }
    }
}

fn open_file(spec: &SourceSpec, path: &Path, scratch: &Path) -> Result<Box<dyn RowReader>> {
    let name = path.display().to_string();
    let file = File::open(path).with_context(|| format!("cannot open source file `{name}`"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read source file `{name}`"))?;
    if meta.is_dir() {
        bail!("the source `{name}` is a directory; give the JSONL or CSV file to read");
    }
    let input = BufReader::with_capacity(READ_BUFFER, file);
    let name = format!("source file `{name}`");
    reader(&spec.format, &spec.key, Box::new(input), name, scratch)
}

/// Reads rows of `format` from `input`; `name` names it in errors (`source file `a.csv``).
pub fn reader(
    format: &SourceFormat,
    key: &str,
    input: Box<dyn BufRead + Send>,
    name: String,
    scratch: &Path,
) -> Result<Box<dyn RowReader>> {
    Ok(match format {
        SourceFormat::Jsonl => Box::new(jsonl::JsonlRows::new(
            lines::Lines::new(input, false),
            key.to_string(),
            name,
        )),
        SourceFormat::Csv => Box::new(csv::CsvRows::new(
            lines::Lines::new(input, true),
            key,
            name,
            scratch,
        )?),
    })
}

/// Why bytes are not text: where the first bad byte is.
fn not_utf8(what: &str, at: usize) -> String {
    format!("not UTF-8: {what} has an invalid byte at byte {at}")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A row that owns its text, for comparing.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Owned {
        Record(String, String),
        Invalid(String),
    }

    impl Owned {
        pub fn key(&self) -> Option<&str> {
            match self {
                Owned::Record(key, _) => Some(key),
                Owned::Invalid(_) => None,
            }
        }
        pub fn reason(&self) -> Option<&str> {
            match self {
                Owned::Invalid(reason) => Some(reason),
                Owned::Record(..) => None,
            }
        }
    }

    impl From<Row<'_>> for Owned {
        fn from(row: Row<'_>) -> Self {
            match row {
                Row::Record { key, payload, .. } => Owned::Record(key.into(), payload.into()),
                Row::Invalid { reason, .. } => Owned::Invalid(reason),
            }
        }
    }

    pub fn line_of(row: &Row<'_>) -> u64 {
        match row {
            Row::Record { line, .. } | Row::Invalid { line, .. } => *line,
        }
    }

    /// Every row of `input`, with its line; the source must be readable.
    pub fn rows(format: SourceFormat, input: &[u8]) -> Vec<(u64, Owned)> {
        try_rows(format, "id", input).unwrap()
    }

    pub fn try_rows(format: SourceFormat, key: &str, input: &[u8]) -> Result<Vec<(u64, Owned)>> {
        let input = Box::new(std::io::Cursor::new(input.to_vec()));
        let mut reader = reader(&format, key, input, "test".into(), &std::env::temp_dir())?;
        let mut out = Vec::new();
        while let Some(row) = reader.next_row()? {
            out.push((line_of(&row), Owned::from(row)));
        }
        Ok(out)
    }

    #[test]
    fn a_directory_is_named_as_one() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SourceSpec {
            format: SourceFormat::Jsonl,
            origin: SourceOrigin::File(dir.path().to_path_buf()),
            key: "id".into(),
        };
        let err = format!("{:#}", open(&spec, dir.path()).err().unwrap());
        assert!(err.contains("is a directory"), "{err}");
        let spec = SourceSpec {
            origin: SourceOrigin::File(dir.path().join("gone.jsonl")),
            ..spec
        };
        let err = format!("{:#}", open(&spec, dir.path()).err().unwrap());
        assert!(
            err.contains("gone.jsonl") && err.contains("No such file or directory"),
            "{err}"
        );
    }
}
