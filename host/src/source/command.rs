//! A program's standard output as a source: how operators plug in `psql`, `bq`,
//! `duckdb` or their own exporters without Sluice carrying every warehouse's driver.
//!
//! The argument list is run as given, without a shell, in the config's folder, with the
//! environment less the destinations' credentials. What the program writes on stderr goes
//! to the log, in the run's span (so tagged with the sync).
//! Its exit is checked when its output ends: a non-zero status or a signal is a read
//! error, so the run fails before the source counts as read in full, and its last lines
//! on stderr are in the message.

use std::collections::VecDeque;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context, Result};

/// How many of a command's last stderr lines a failure quotes, and how long each may be.
const TAIL_LINES: usize = 5;
const TAIL_LINE_CHARS: usize = 300;

/// The output of a running source command, read until it ends; then its exit is checked.
pub struct CommandOutput {
    stdout: ChildStdout,
    child: Child,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_reader: Option<JoinHandle<()>>,
    ended: bool,
}

/// The source's name in messages: the program as written.
pub fn describe(argv: &[String]) -> String {
    format!(
        "source command `{}`",
        argv.first().map_or("", String::as_str)
    )
}

impl CommandOutput {
    /// Starts `argv` in `dir`, without the environment variables named in `withheld`.
    pub fn start(argv: &[String], dir: &Path, withheld: &[String]) -> Result<CommandOutput> {
        let (program, args) = argv.split_first().context("the source command is empty")?;
        let mut command = Command::new(program);
        for name in withheld {
            command.env_remove(name);
        }
        let mut child = command
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!("cannot run the {} (in `{}`)", describe(argv), dir.display())
            })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let tail = stderr_tail.clone();
        let span = tracing::Span::current();
        let name = program.clone();
        let stderr_reader = std::thread::spawn(move || {
            let _in_run = span.enter();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                tracing::warn!(command = %name, "source command: {line}");
                let mut tail = tail.lock().unwrap();
                if tail.len() == TAIL_LINES {
                    tail.pop_front();
                }
                tail.push_back(line.chars().take(TAIL_LINE_CHARS).collect());
            }
        });
        Ok(CommandOutput {
            stdout,
            child,
            stderr_tail,
            stderr_reader: Some(stderr_reader),
            ended: false,
        })
    }

    /// The program has closed its output: wait for it, and say how it failed if it did.
    fn check_exit(&mut self) -> io::Result<()> {
        self.ended = true;
        let status = self.child.wait()?;
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        if status.success() {
            return Ok(());
        }
        let how = match (status.code(), signal_of(&status)) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "failed".to_string(),
        };
        let tail: Vec<String> = self.stderr_tail.lock().unwrap().iter().cloned().collect();
        let said = if tail.is_empty() {
            " and wrote nothing on stderr".to_string()
        } else {
            format!("; its last words on stderr: {}", tail.join(" | "))
        };
        Err(io::Error::other(format!(
            "the program {how}{said}; nothing of this read is sent"
        )))
    }
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

#[cfg(not(unix))]
fn signal_of(_: &std::process::ExitStatus) -> Option<i32> {
    None
}

impl Read for CommandOutput {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.ended {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.check_exit()?;
        }
        Ok(n)
    }
}

impl Drop for CommandOutput {
    /// A run stopped before the output ended does not leave the program running.
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
