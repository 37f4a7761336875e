//! Progress of a running sync: a live line on a terminal, periodic plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice::engine::{Count, Counters};

/// How progress is shown.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A live status line on stderr (stdout is a terminal).
    Live,
    /// A plain line on stderr every few seconds (stdout is a pipe or a file).
    Lines,
    Quiet,
}

impl Mode {
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
            Mode::Live
        } else {
            Mode::Lines
        }
    }
}

/// Shows `counters` until the returned guard is dropped.
pub fn show(sync: &str, counters: Arc<Counters>, mode: Mode) -> Option<ProgressGuard> {
    let every = match mode {
        Mode::Quiet => return None,
        Mode::Live => Duration::from_millis(200),
        Mode::Lines => Duration::from_secs(2),
    };
    let bar = (mode == Mode::Live).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {prefix} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.set_prefix(sync.to_string());
        bar
    });
    let sync = sync.to_string();
    let task_bar = bar.clone();
    let task = tokio::spawn(async move {
        let started = Instant::now();
        let mut ticker = tokio::time::interval(every);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let line = status_line(&counters, started.elapsed());
            match &task_bar {
                Some(bar) => {
                    bar.set_message(line);
                    bar.tick();
                }
                None => sluice::output::warn(format_args!("{sync}: {line}")),
            }
        }
    });
    Some(ProgressGuard { task, bar })
}

pub struct ProgressGuard {
    task: tokio::task::JoinHandle<()>,
    bar: Option<indicatif::ProgressBar>,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn status_line(c: &Counters, elapsed: Duration) -> String {
    let per_second = c.get(Count::Requests) as f64 / elapsed.as_secs_f64().max(0.001);
    let mut line = format!(
        "read {} · delivered {} · rejected {} · permanent {} · in flight {} · {per_second:.1} req/s",
        c.get(Count::Read),
        c.get(Count::Delivered),
        c.get(Count::Rejected),
        c.get(Count::Permanent),
        c.in_flight(),
    );
    let paused_until = c.paused_until_ms();
    let now = sluice::clock::now_ms();
    if paused_until > now {
        line.push_str(&format!(
            " · rate-limit pause {:.1}s",
            (paused_until - now) as f64 / 1000.0
        ));
    }
    line
}
