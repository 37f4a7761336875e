//! The end-of-run report for people; `--json` prints the summary itself.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::engine::{Fate, Outcome, RunReport, Settled};

/// How many failed records are shown by example.
const EXAMPLES: usize = 8;

/// A human-readable report of one run.
pub fn render(report: &RunReport, failures: &[Settled]) -> String {
    let s = &report.summary;
    let mut out = String::new();
    let outcome = match s.outcome {
        Outcome::Completed => "completed",
        Outcome::Failed => "FAILED",
        Outcome::Interrupted => "interrupted",
    };
    let _ = writeln!(
        out,
        "sync `{}` {outcome} in {:.1}s",
        s.sync,
        s.elapsed_ms as f64 / 1000.0
    );
    if let Some(error) = &s.error {
        let _ = writeln!(out, "  error: {error}");
    }
    let rows = [
        ("read", s.read),
        ("delivered", s.delivered),
        ("rejected", s.rejected),
        ("permanent", s.permanent),
        ("pending", s.pending),
        ("unchanged (skipped)", s.unchanged),
        ("held for a person", s.held),
        ("invalid source rows", s.invalid_rows),
        ("repeated keys", s.duplicate_keys),
        ("requests", s.requests),
        ("retries", s.retries),
        ("transient failures", s.transient_failures),
        ("rate-limit waits", s.rate_limit_waits),
        ("rate-limit wait (ms)", s.rate_limit_wait_ms),
        ("bisections", s.bisections),
        ("auth renewals", s.auth_renewals),
    ];
    for (label, value) in rows {
        let _ = writeln!(out, "  {label:<22}{value:>10}");
    }

    let mut by_code: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for f in failures {
        if let Some((status, failure)) = status_and_failure(&f.fate) {
            *by_code.entry((status, failure.code.as_str())).or_default() += 1;
        }
    }
    if !by_code.is_empty() {
        let _ = writeln!(out, "  failures by code:");
        for ((status, code), n) in &by_code {
            let _ = writeln!(out, "    {status:<10}{code:<36}{n:>6}");
        }
        let _ = writeln!(out, "  examples:");
        for f in failures.iter().take(EXAMPLES) {
            if let Some((status, failure)) = status_and_failure(&f.fate) {
                let fields = if failure.fields.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", failure.fields.join(", "))
                };
                let _ = writeln!(
                    out,
                    "    {} {status}: {}{fields}: {}",
                    f.record.key, failure.code, failure.message
                );
            }
        }
    }
    for row in report.invalid_rows.iter().take(EXAMPLES) {
        let _ = writeln!(out, "  skipped source line {}: {}", row.line, row.reason);
    }
    out
}

fn status_and_failure(fate: &Fate) -> Option<(&'static str, &crate::engine::RecordFailure)> {
    match fate {
        Fate::Delivered(_) => None,
        Fate::Rejected(f) => Some(("rejected", f)),
        Fate::Permanent(f) => Some(("permanent", f)),
        Fate::Pending(f) => f.as_ref().map(|f| ("pending", f)),
    }
}
