//! What commands print for people and scripts, and how a failing standard output ends.
//!
//! `println!` panics when stdout cannot be written: a reader that closed the pipe early
//! (`sluice ledger list | head`) or a full device (`> /dev/full`) ended the process with
//! exit 101, skipping whatever came after. Commands write through [`Output`] instead:
//!
//! - a **closed pipe** ends the output quietly: the reader wanted no more. Later writes
//!   are discarded and the command carries on (a `sluice run` still runs and records every
//!   sync; `sluice runs` shows what the report would have said). Its exit status is the
//!   command's own.
//! - any **other write error** (a full disk, an I/O error) is remembered, later writes are
//!   discarded, and [`Output::finish`] turns it into an error naming stdout: the command
//!   exits non-zero.
//!
//! Writes never fail from the caller's point of view; loops over many lines ask
//! [`Output::is_open`] to stop early.

use std::io::{self, Write};

use anyhow::Result;

/// A command's standard output (or any writer, for tests).
pub struct Output<W: Write = io::Stdout> {
    inner: W,
    /// Written and not yet passed on: commands print many short lines.
    buffer: Vec<u8>,
    /// What the output is called in messages.
    name: &'static str,
    state: State,
}

enum State {
    Open,
    /// The reader went away.
    Closed,
    Failed(io::Error),
}

/// Passed on once this much is buffered.
const BUFFER: usize = 64 * 1024;

impl Output<io::Stdout> {
    pub fn stdout() -> Self {
        Output::new(io::stdout(), "stdout")
    }
}

impl<W: Write> Output<W> {
    pub fn new(inner: W, name: &'static str) -> Self {
        Output {
            inner,
            buffer: Vec::new(),
            name,
            state: State::Open,
        }
    }

    /// Whether writes still reach the reader.
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }

    /// Whether the reader closed the pipe.
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Passes on what was written so far (after each sync's report, so that it shows
    /// while the next sync runs).
    pub fn push(&mut self) {
        if !self.is_open() {
            self.buffer.clear();
            return;
        }
        let result = self
            .inner
            .write_all(&self.buffer)
            .and_then(|()| self.inner.flush());
        self.buffer.clear();
        if let Err(err) = result {
            self.state = if err.kind() == io::ErrorKind::BrokenPipe {
                State::Closed
            } else {
                State::Failed(err)
            };
        }
    }

    /// Passes on the rest, and says whether everything written reached the reader (or was
    /// dropped because the reader closed the pipe).
    pub fn finish(mut self) -> Result<()> {
        self.push();
        match std::mem::replace(&mut self.state, State::Open) {
            State::Open | State::Closed => Ok(()),
            State::Failed(err) => Err(describe(self.name, &err)),
        }
    }
}

/// An output dropped without `finish` (a command that failed part-way) still passes on
/// what it printed before the failure.
impl<W: Write> Drop for Output<W> {
    fn drop(&mut self) {
        self.push();
    }
}

impl<W: Write> Write for Output<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.is_open() {
            self.buffer.extend_from_slice(buf);
            if self.buffer.len() >= BUFFER {
                self.push();
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.push();
        Ok(())
    }
}

/// The error a command ends with when its output could not be written.
fn describe(name: &str, err: &io::Error) -> anyhow::Error {
    if is_disk_full(err) {
        anyhow::anyhow!("cannot write to {name}: the device is full (no space left on device)")
    } else {
        anyhow::anyhow!("cannot write to {name}: {err}")
    }
}

/// ENOSPC, by kind or by number (older kernels and libraries report only the number).
pub fn is_disk_full(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::StorageFull || err.raw_os_error() == Some(28)
}

/// Writes a line to stderr, ignoring failure: a message about a problem must not become a
/// second problem (`eprintln!` panics when stderr is closed).
pub fn warn(line: std::fmt::Arguments<'_>) {
    let mut err = io::stderr().lock();
    let _ = err.write_fmt(line);
    let _ = err.write_all(b"\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts `room` bytes, then fails with `kind`.
    struct Limited {
        room: usize,
        kind: io::ErrorKind,
        written: Vec<u8>,
    }

    impl Write for Limited {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(self.kind.into());
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.written.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_closed_pipe_ends_quietly_and_a_full_device_is_an_error_naming_it() {
        for (kind, ok) in [
            (io::ErrorKind::BrokenPipe, true),
            (io::ErrorKind::StorageFull, false),
        ] {
            let mut out = Output::new(
                Limited {
                    room: 10,
                    kind,
                    written: Vec::new(),
                },
                "stdout",
            );
            for i in 0..10_000 {
                writeln!(out, "line {i}").unwrap();
                if !out.is_open() {
                    break;
                }
            }
            assert!(!out.is_open());
            assert_eq!(out.is_closed(), ok);
            match out.finish() {
                Ok(()) => assert!(ok),
                Err(err) => {
                    assert!(!ok);
                    assert_eq!(
                        err.to_string(),
                        "cannot write to stdout: the device is full (no space left on device)"
                    );
                }
            }
        }
    }
}
