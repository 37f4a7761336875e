//! CSV (RFC 4180): a header row naming the columns, then one record per row, whose payload
//! is a JSON object of strings by column name.
//!
//! A quoted field may span lines, so a quote that never closes shows only at the end of
//! the input. Then the row where it opened is reported, and the lines after that row's
//! first line are read again as rows of their own. They come from a replay buffer (memory,
//! then an unlinked file), filled while the row was open: a source is read once.
//!
//! Re-reading stays linear. At every line end inside a row the parser is in the same state
//! (inside a quoted field), so the lines that follow decide alone whether the field ever
//! closes. Once one never did, none of the rows after it that is still open at its line
//! end can close either: such a row is reported at once, and the replay is a single pass.
//!
//! The parser is csv-core, fed one line at a time (the csv crate reads on past an
//! unclosed quote and cannot be told to go back).

use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use csv_core::ReadRecordResult;
use tempfile::SpooledTempFile;

mod columns;

use self::columns::{Columns, json_string};
use super::lines::Lines;
use super::{Row, RowReader, not_utf8};

/// How much of an open row's later lines is kept in memory before they go to a file.
const REPLAY_IN_MEMORY: usize = 1024 * 1024;
/// A header row longer than this is refused (an unclosed quote in the header, most likely).
const MAX_HEADER: usize = 1024 * 1024;

pub(super) struct CsvRows {
    lines: Lines,
    path: String,
    parser: Parser,
    columns: Columns,
    payload: String,
    /// A quote has been found never to close: any later row still open at its line end is
    /// reported at once (see the module's comment).
    after_unclosed: bool,
    /// A row that is open past its first line, waiting for its quote to close.
    open_row: Option<OpenRow>,
    scratch: PathBuf,
}

/// A row whose quoted field runs past its first line.
struct OpenRow {
    line: u64,
    last_line: u64,
    /// Its first line, as fed to the parser.
    first: Vec<u8>,
    /// The lines after it, as fed: re-parsed when the quote closes, read as rows of their
    /// own when it does not.
    rest: BufWriter<SpooledTempFile>,
}

impl CsvRows {
    pub fn new(lines: Lines, key: &str, path: String, scratch: &Path) -> Result<Self> {
        let mut rows = CsvRows {
            lines,
            path,
            parser: Parser::new(),
            columns: Columns::default(),
            payload: String::new(),
            after_unclosed: false,
            open_row: None,
            scratch: scratch.to_path_buf(),
        };
        let names = rows.header()?;
        rows.columns =
            Columns::new(names, key).with_context(|| format!("the header row of {}", rows.path))?;
        Ok(rows)
    }

    /// The column names, from the first row that is not blank.
    fn header(&mut self) -> Result<Vec<String>> {
        let path = self.path.clone();
        let mut started = None;
        loop {
            let line = self
                .lines
                .next()
                .with_context(|| format!("reading the header row of {path}"))?;
            let Some(line) = line else {
                match started {
                    None => bail!("{path} is empty: a CSV source starts with a header row"),
                    Some(at) => bail!("the header row of {path} (line {at}) has an unclosed quote"),
                }
            };
            if started.is_none() && line.content.is_empty() {
                continue;
            }
            started.get_or_insert(line.number);
            if self
                .parser
                .feed_line(line.content, line.terminator, Keep::Fields)
            {
                break;
            }
            if self.parser.fields.len > MAX_HEADER {
                bail!(
                    "the header row of {path} (line {}) is longer than {MAX_HEADER} bytes: an unclosed quote?",
                    started.unwrap_or(1)
                );
            }
        }
        if let Some(column) = self.parser.stray_after_quote() {
            bail!(
                "the header row of {path} (line {}): {}",
                started.unwrap_or(1),
                stray_text(&format!("column {}", column + 1))
            );
        }
        let fields = &self.parser.fields;
        (0..fields.count())
            .map(|i| {
                std::str::from_utf8(fields.get(i))
                    .map(str::to_string)
                    .map_err(|err| {
                        anyhow::anyhow!(
                            "the header row of {path}: {}",
                            not_utf8(&format!("column {}", i + 1), err.valid_up_to())
                        )
                    })
            })
            .collect()
    }

    /// At the end of the input: an open row never closed.
    fn at_end(&mut self) -> Result<Option<Row<'_>>> {
        let Some(open) = self.open_row.take() else {
            return Ok(None);
        };
        self.parser.reset();
        let rest = read_back(open.rest)?;
        self.lines
            .replay(Box::new(BufReader::new(rest)), open.line + 1);
        self.after_unclosed = true;
        Ok(Some(Row::Invalid {
            line: open.line,
            reason: UNCLOSED.to_string(),
        }))
    }

    /// Parses an open row again, now that its quote closed, keeping its fields this time.
    fn reparse(&mut self, open: OpenRow) -> Result<Row<'_>> {
        self.parser.reset();
        self.parser.fields.clear();
        let mut closed = self.parser.feed(&open.first, Keep::Fields);
        let mut rest = read_back(open.rest)?;
        let mut buf = vec![0; 64 * 1024];
        while !closed {
            let n = rest
                .read(&mut buf)
                .context("reading back the lines of a quoted field")?;
            if n == 0 {
                break;
            }
            closed = self.parser.feed(&buf[..n], Keep::Fields);
        }
        debug_assert!(closed, "a row that closed once closes again");
        Ok(record(
            &self.parser,
            &self.columns,
            &mut self.payload,
            open.line,
            open.last_line,
        ))
    }
}

/// The lines kept after an open row's first line, from their start.
fn read_back(rest: BufWriter<SpooledTempFile>) -> Result<SpooledTempFile> {
    let mut rest = rest
        .into_inner()
        .map_err(|err| err.into_error())
        .context("keeping the lines of a quoted field that spans lines")?;
    rest.seek(SeekFrom::Start(0))
        .context("reading back the lines of a quoted field that spans lines")?;
    Ok(rest)
}

const UNCLOSED: &str = "unclosed quote: a quoted field that starts on this row never ends; \
     the lines after this one are read as rows of their own";

impl RowReader for CsvRows {
    fn next_row(&mut self) -> Result<Option<Row<'_>>> {
        loop {
            let at = self.lines.next_number();
            let line = self
                .lines
                .next()
                .with_context(|| format!("reading {} at line {at}", self.path))?;
            let Some(line) = line else {
                return self.at_end();
            };
            if let Some(open) = &mut self.open_row {
                open.last_line = line.number;
                let terminator = fed_terminator(line.terminator);
                open.rest
                    .write_all(line.content)
                    .and_then(|()| open.rest.write_all(terminator))
                    .with_context(|| {
                        format!(
                            "keeping the lines of an open quoted field in `{}`",
                            self.scratch.display()
                        )
                    })?;
                if self
                    .parser
                    .feed_line(line.content, line.terminator, Keep::Nothing)
                {
                    let open = self.open_row.take().expect("an open row");
                    return self.reparse(open).map(Some);
                }
                continue;
            }
            if line.content.is_empty() {
                continue;
            }
            self.parser.fields.clear();
            if self
                .parser
                .feed_line(line.content, line.terminator, Keep::Fields)
            {
                return Ok(Some(record(
                    &self.parser,
                    &self.columns,
                    &mut self.payload,
                    line.number,
                    line.number,
                )));
            }
            // The row goes on past its line: it is inside a quoted field.
            if self.after_unclosed {
                self.parser.reset();
                return Ok(Some(Row::Invalid {
                    line: line.number,
                    reason: UNCLOSED.to_string(),
                }));
            }
            let mut first = Vec::with_capacity(line.content.len() + 2);
            first.extend_from_slice(line.content);
            first.extend_from_slice(fed_terminator(line.terminator));
            let replay = SpooledTempFile::new_in(REPLAY_IN_MEMORY, &self.scratch);
            self.open_row = Some(OpenRow {
                line: line.number,
                last_line: line.number,
                first,
                rest: BufWriter::new(replay),
            });
        }
    }
}

/// A last line without a terminator is fed one, so that the parser says whether the row
/// ended (a quote that is still open takes it in instead).
fn fed_terminator(terminator: &[u8]) -> &[u8] {
    if terminator.is_empty() {
        b"\n"
    } else {
        terminator
    }
}

/// Why text after a closing quote makes a row unreadable.
fn stray_text(column: &str) -> String {
    format!(
        "text follows the closing quote of {column}: a quote inside a quoted field must be \
         written twice (`\"\"`), and without that the row cannot be read as its writer meant"
    )
}

/// The row that ended on `last_line`, as a record or the reason it cannot be one.
fn record<'a>(
    parser: &'a Parser,
    columns: &Columns,
    payload: &'a mut String,
    line: u64,
    last_line: u64,
) -> Row<'a> {
    let fields = &parser.fields;
    let invalid = |reason: String| Row::Invalid { line, reason };
    let span = if last_line > line {
        format!(" (a quoted field runs from line {line} to line {last_line})")
    } else {
        String::new()
    };
    if let Some(column) = parser.stray_after_quote() {
        let column = match columns.names.get(column) {
            Some(name) => format!("column `{name}`"),
            None => format!("field {} (past the header's columns)", column + 1),
        };
        return invalid(format!("{}{span}", stray_text(&column)));
    }
    let count = fields.count();
    if count != columns.names.len() {
        return invalid(format!(
            "the row has {count} fields, the header has {}{span}",
            columns.names.len()
        ));
    }
    let text = match fields.text() {
        Ok(text) => text,
        Err((column, at)) => {
            let what = format!("column `{}`", columns.names[column]);
            return invalid(not_utf8(&what, at));
        }
    };
    let field = |i: usize| &text[fields.start(i)..fields.ends[i]];
    let key = field(columns.key).trim();
    if key.is_empty() {
        return invalid(format!(
            "the key column `{}` is empty",
            columns.names[columns.key]
        ));
    }
    payload.clear();
    payload.push('{');
    for (i, (name, column)) in columns.payload.iter().enumerate() {
        if i > 0 {
            payload.push(',');
        }
        payload.push_str(name);
        json_string(payload, field(*column));
    }
    payload.push('}');
    Row::Record { line, key, payload }
}

/// What to keep of the bytes fed to the parser.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    Fields,
    /// Only where the row ends matters: the fields are parsed again if it closes.
    Nothing,
}

/// csv-core with the csv crate's defaults (comma, double quote, `""` inside quotes, CR,
/// LF or CRLF ending a row) and the fields of the current row.
pub(super) struct Parser {
    core: csv_core::Reader,
    fields: Fields,
    quotes: Quotes,
}

impl Parser {
    pub(super) fn new() -> Self {
        let mut parser = Parser {
            core: csv_core::Reader::new(),
            fields: Fields::default(),
            quotes: Quotes::default(),
        };
        parser.reset();
        parser
    }

    /// Back to the start of a row. csv-core drops a byte-order mark from the first bytes
    /// it reads after a reset; the lines have dropped the source's already, so a blank
    /// line is fed first and a field that starts with U+FEFF keeps it.
    fn reset(&mut self) {
        self.core.reset();
        self.feed(b"\n", Keep::Nothing);
        self.quotes = Quotes::default();
    }

    /// The field (from 0) of the row that ended last where text follows a closing quote.
    fn stray_after_quote(&self) -> Option<usize> {
        self.quotes.stray
    }

    /// Feeds one line; true when the row ended with it.
    pub(super) fn feed_line(&mut self, content: &[u8], terminator: &[u8], keep: Keep) -> bool {
        // The content holds no line end, so the row can only end at the terminator.
        let ended = self.feed(content, keep);
        ended || self.feed(fed_terminator(terminator), keep)
    }

    /// Feeds bytes; true when a row ended in them (anything after its end is dropped: the
    /// `\n` of a CRLF, which the parser skips anyway).
    fn feed(&mut self, mut input: &[u8], keep: Keep) -> bool {
        let mut out = [0u8; 256];
        let mut ends = [0usize; 16];
        // csv-core reads empty input as the end of the source: never give it any.
        while !input.is_empty() {
            let (result, read) = match keep {
                Keep::Fields => self.fields.read(&mut self.core, input),
                Keep::Nothing => {
                    let (result, read, _, _) = self.core.read_record(input, &mut out, &mut ends);
                    (result, read)
                }
            };
            self.quotes.scan(&input[..read]);
            input = &input[read..];
            match result {
                ReadRecordResult::Record => {
                    self.quotes.row_ended();
                    return true;
                }
                ReadRecordResult::InputEmpty | ReadRecordResult::End => return false,
                ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
            }
        }
        false
    }
}

/// How the quotes of a row pair up, which csv-core does not check: it reads text after a
/// closing quote (`"a"b`) into the field as if nothing were wrong. That text means a quote
/// inside a quoted field was not doubled, and then the rows around it are not what the
/// writer meant: a quote left open on one line and "closed" on a later one turns the rows
/// between into one field. Such a row is reported, never read as a record.
#[derive(Default)]
struct Quotes {
    state: Quoting,
    field: usize,
    /// The first field of this row with text after its closing quote.
    stray: Option<usize>,
    /// The row ended: the next byte starts another.
    ended: bool,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    #[default]
    FieldStart,
    Unquoted,
    Quoted,
    /// A quote inside a quoted field: it closes the field, or is the first of a pair.
    QuoteInQuoted,
}

impl Quotes {
    /// Follows the bytes csv-core read, which end at most at the end of a row.
    fn scan(&mut self, bytes: &[u8]) {
        if self.ended && !bytes.is_empty() {
            *self = Quotes::default();
        }
        for &byte in bytes {
            self.state = match (self.state, byte) {
                (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
                (Quoting::Quoted, _) => Quoting::Quoted,
                (Quoting::FieldStart, b'"') | (Quoting::QuoteInQuoted, b'"') => Quoting::Quoted,
                (_, b',') => {
                    self.field += 1;
                    Quoting::FieldStart
                }
                (_, b'\r' | b'\n') => Quoting::FieldStart,
                (Quoting::QuoteInQuoted, _) => {
                    self.stray.get_or_insert(self.field);
                    Quoting::Unquoted
                }
                (_, _) => Quoting::Unquoted,
            };
        }
    }

    fn row_ended(&mut self) {
        self.ended = true;
    }
}

/// The fields of a row: their bytes one after the other, and where each ends.
#[derive(Default)]
struct Fields {
    bytes: Vec<u8>,
    len: usize,
    ends: Vec<usize>,
    count: usize,
}

impl Fields {
    fn clear(&mut self) {
        self.len = 0;
        self.count = 0;
    }

    fn count(&self) -> usize {
        self.count
    }

    fn start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.ends[i - 1] }
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.bytes[self.start(i)..self.ends[i]]
    }

    /// The fields as one text, or the first field that is not UTF-8 and where in it.
    fn text(&self) -> Result<&str, (usize, usize)> {
        let bytes = &self.bytes[..self.len];
        let bad = |at: usize| {
            let column = self.ends[..self.count].partition_point(|&end| end <= at);
            (column, at - self.start(column))
        };
        let text = std::str::from_utf8(bytes).map_err(|err| bad(err.valid_up_to()))?;
        // Valid as a whole, but a character may straddle two fields.
        match self.ends[..self.count]
            .iter()
            .position(|&end| !text.is_char_boundary(end))
        {
            Some(column) => {
                // Where the character cut short starts, inside this field.
                let mut at = self.ends[column];
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                Err((column, at - self.start(column)))
            }
            None => Ok(text),
        }
    }

    fn read(&mut self, core: &mut csv_core::Reader, input: &[u8]) -> (ReadRecordResult, usize) {
        if self.len == self.bytes.len() {
            self.bytes.resize((self.bytes.len() * 2).max(1024), 0);
        }
        if self.count == self.ends.len() {
            self.ends.resize((self.ends.len() * 2).max(32), 0);
        }
        let (result, read, written, ended) = core.read_record(
            input,
            &mut self.bytes[self.len..],
            &mut self.ends[self.count..],
        );
        self.len += written;
        // csv-core counts field ends from the start of the row.
        self.count += ended;
        (result, read)
    }
}

#[cfg(test)]
mod tests;
