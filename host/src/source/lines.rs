//! A source split into numbered lines of bytes, with a leading byte-order mark dropped.
//! Lines are bytes, not text: a line that is not UTF-8 is its row's problem, never the
//! whole source's.

use std::io::{self, BufRead};

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One line of the source.
pub(super) struct Line<'a> {
    /// From 1.
    pub number: u64,
    /// The line without its terminator.
    pub content: &'a [u8],
    /// `\n`, `\r\n`, a lone `\r` (when it ends lines), or empty for a last line without one.
    pub terminator: &'a [u8],
}

pub(super) struct Lines {
    input: Box<dyn BufRead + Send>,
    /// What the last `read_until` gave: lines up to a `\n`, or up to the end of the input.
    chunk: Vec<u8>,
    /// Where the next line starts in `chunk`.
    pos: usize,
    next_number: u64,
    /// A lone `\r` ends a line too (CSV, as csv-core reads it); otherwise only `\n` does,
    /// and a `\r` just before it belongs to the terminator.
    lone_cr_ends_line: bool,
    at_start: bool,
}

impl Lines {
    pub fn new(input: Box<dyn BufRead + Send>, lone_cr_ends_line: bool) -> Self {
        Lines {
            input,
            chunk: Vec::new(),
            pos: 0,
            next_number: 1,
            lone_cr_ends_line,
            at_start: true,
        }
    }

    /// The number the next line will have.
    pub fn next_number(&self) -> u64 {
        self.next_number
    }

    pub fn next(&mut self) -> io::Result<Option<Line<'_>>> {
        self.next_where(|_| true)
    }

    /// The next line whose content `keep` accepts; the others are passed over (and
    /// counted).
    pub fn next_where(&mut self, keep: impl Fn(&[u8]) -> bool) -> io::Result<Option<Line<'_>>> {
        loop {
            if self.pos >= self.chunk.len() {
                self.chunk.clear();
                self.pos = 0;
                if self.input.read_until(b'\n', &mut self.chunk)? == 0 {
                    return Ok(None);
                }
                if std::mem::take(&mut self.at_start) && self.chunk.starts_with(BOM) {
                    self.pos = BOM.len();
                }
            }
            let start = self.pos;
            let (content, terminator) = split(&self.chunk[start..], self.lone_cr_ends_line);
            self.pos += content + terminator;
            let number = self.next_number;
            self.next_number += 1;
            let end = start + content;
            if keep(&self.chunk[start..end]) {
                return Ok(Some(Line {
                    number,
                    content: &self.chunk[start..end],
                    terminator: &self.chunk[end..end + terminator],
                }));
            }
        }
    }

    /// Reads `input` from now on, its first line numbered `first_line`: lines read again
    /// from a buffer. No byte-order mark is dropped from it.
    pub fn replay(&mut self, input: Box<dyn BufRead + Send>, first_line: u64) {
        self.input = input;
        self.chunk.clear();
        self.pos = 0;
        self.next_number = first_line;
        self.at_start = false;
    }
}

/// The lengths of the first line of `rest` (which holds at most one `\n`, at its end) and
/// of its terminator.
fn split(rest: &[u8], lone_cr_ends_line: bool) -> (usize, usize) {
    if lone_cr_ends_line && rest.contains(&b'\r') {
        let cr = rest.iter().position(|&b| b == b'\r').unwrap_or(rest.len());
        let crlf = rest.get(cr + 1) == Some(&b'\n');
        return (cr, if crlf { 2 } else { 1 });
    }
    match rest {
        [.., b'\r', b'\n'] => (rest.len() - 2, 2),
        [.., b'\n'] => (rest.len() - 1, 1),
        _ => (rest.len(), 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], lone_cr: bool) -> Vec<(u64, String, String)> {
        let mut lines = Lines::new(Box::new(io::Cursor::new(input.to_vec())), lone_cr);
        let mut out = Vec::new();
        while let Some(line) = lines.next().unwrap() {
            out.push((
                line.number,
                String::from_utf8_lossy(line.content).into_owned(),
                String::from_utf8_lossy(line.terminator).into_owned(),
            ));
        }
        out
    }

    fn l(n: u64, content: &str, term: &str) -> (u64, String, String) {
        (n, content.into(), term.into())
    }

    #[test]
    fn terminators_and_bom() {
        let input = b"\xEF\xBB\xBFa\r\nb\rc\n\nd";
        assert_eq!(
            lines(input, false),
            [
                l(1, "a", "\r\n"),
                l(2, "b\rc", "\n"),
                l(3, "", "\n"),
                l(4, "d", "")
            ]
        );
        assert_eq!(
            lines(input, true),
            [
                l(1, "a", "\r\n"),
                l(2, "b", "\r"),
                l(3, "c", "\n"),
                l(4, "", "\n"),
                l(5, "d", "")
            ]
        );
        // Only a leading mark is dropped.
        assert_eq!(lines(b"x\n\xEF\xBB\xBFy", false)[1].1, "\u{feff}y");
        assert_eq!(lines(b"a\r", true), [l(1, "a", "\r")]);
        assert_eq!(lines(b"a\r", false), [l(1, "a\r", "")]);
    }
}
