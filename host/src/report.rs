//! The end-of-run report for people; `--json` prints the summary itself.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::engine::{Fate, InvalidRow, MAX_SKIPPED_ROWS_KEPT, Outcome, RunReport, Settled};

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
        let _ = writeln!(out, "  error: {}", printable(error));
    }
    if let Some(why) = &s.resent_because {
        let _ = writeln!(out, "  sent again: {why}");
    }
    if let Some(why) = &s.deletes_withheld_because {
        let _ = writeln!(out, "  deletes withheld: {why}");
    }
    // Counts a behaviour brings are shown when it did something.
    let behaviours = [
        ("token requests", s.token_requests),
        ("deletes sent", s.deletes),
        ("deleted", s.deleted),
        (
            "failures forgotten (gone from source)",
            s.failures_forgotten,
        ),
        ("not at destination", s.not_at_destination),
        ("already at destination", s.already_at_destination),
    ];
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
    let shown = behaviours.into_iter().filter(|(_, value)| *value > 0);
    for (label, value) in rows.into_iter().chain(shown) {
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
            let _ = writeln!(out, "    {status:<10}{:<36}{n:>6}", printable(code));
        }
        let _ = writeln!(out, "  examples:");
        for f in failures.iter().take(EXAMPLES) {
            if let Some((status, failure)) = status_and_failure(&f.fate) {
                let fields = if failure.fields.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", printable(&failure.fields.join(", ")))
                };
                let _ = writeln!(
                    out,
                    "    {} {status}: {}{fields}: {}",
                    printable(&f.record.key),
                    printable(&failure.code),
                    printable(&failure.message)
                );
            }
        }
    }
    let skipped = s.invalid_rows + s.duplicate_keys;
    skipped_rows(&mut out, &s.skipped_rows, skipped, report.position);
    out
}

/// The skipped source rows of a run or a plan, for people, worded alike: the first
/// [`EXAMPLES`] as `skipped source line N: <reason>` (`row N` for a query), then how many
/// more of the `total` there were and where to see them (the JSON keeps the first
/// [`MAX_SKIPPED_ROWS_KEPT`]; the log at level info names every one with its file).
pub fn skipped_rows(out: &mut String, rows: &[InvalidRow], total: u64, position: &str) {
    for row in rows.iter().take(EXAMPLES) {
        let _ = writeln!(
            out,
            "  skipped source {position} {}: {}",
            row.line,
            printable(&row.reason)
        );
    }
    let shown = rows.len().min(EXAMPLES) as u64;
    if total > shown {
        let _ = writeln!(
            out,
            "  and {} more skipped source {position}s: `--json` lists the first \
             {MAX_SKIPPED_ROWS_KEPT}, and `RUST_LOG=sluice=info` logs every one",
            total - shown
        );
    }
}

fn status_and_failure(fate: &Fate) -> Option<(&'static str, &crate::engine::RecordFailure)> {
    match fate {
        Fate::Delivered(_) => None,
        Fate::Rejected(f) => Some(("rejected", f)),
        Fate::Permanent(f) => Some(("permanent", f)),
        Fate::Pending(f) => f.as_ref().map(|f| ("pending", f)),
    }
}

/// Whether `c` must not reach a terminal as itself: control characters (C0, DEL and C1,
/// which move the cursor, rewrite the screen or start escape sequences) and the
/// bidirectional overrides and isolates (which reorder what is shown).
fn unsafe_to_show(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` as it may be shown to a person: every character [`unsafe_to_show`] written as
/// an escape (`\n`, `\t`, `\u{1b}`), so that a key, code or message from a source or a
/// destination cannot rewrite the operator's terminal or disguise itself. Other text,
/// backslashes included, is shown as it is.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_to_show) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_to_show(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// JSON text as it may be shown: serde_json escapes C0 controls but writes DEL, C1
/// controls and bidirectional marks as themselves; these can only occur inside strings,
/// so writing them as `\uXXXX` escapes keeps the same value.
pub fn printable_json(json: String) -> String {
    // ASCII controls are escaped already inside strings, and are layout outside them.
    let escape = |c: char| c > '\u{7e}' && unsafe_to_show(c);
    if !json.chars().any(escape) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 8);
    for c in json.chars() {
        if escape(c) {
            let _ = write!(out, "\\u{:04x}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// A time in milliseconds since the Unix epoch as RFC 3339 (seconds); empty for `None`.
pub fn rfc3339(ms: Option<u64>) -> String {
    ms.map(|ms| humantime::format_rfc3339_seconds(crate::clock::at_ms(ms)).to_string())
        .unwrap_or_default()
}

/// A ledger entry as `ledger list --json`, `ledger show` and the console's API show it
/// (docs/cli.md).
pub fn entry_json(key: &str, e: &crate::ledger::Entry) -> serde_json::Value {
    let time = |ms: Option<u64>| ms.map(|ms| rfc3339(Some(ms)));
    serde_json::json!({
        "key": key,
        "status": e.status.name(),
        "code": e.failure.as_ref().map(|f| f.code.clone()),
        "message": e.failure.as_ref().map(|f| f.message.clone()),
        "fields": e.failure.as_ref().map(|f| f.fields.clone()).unwrap_or_default(),
        "attempts": e.attempts,
        "first_failure": time(e.first_failure_ms),
        "last_attempt": time(e.last_attempt_ms),
        "destination_id": e.destination_id,
        // What failed: sending the record's data, or deleting it (a mirror run).
        "operation": if e.deleting { "delete" } else { "send" },
        "resolution": e.resolution.as_ref().map(|r| serde_json::json!({"by": r.by, "why": r.why, "at": rfc3339(Some(r.at_ms))})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_for_people_and_kept_in_json() {
        assert_eq!(printable("plain \\ text"), "plain \\ text");
        assert_eq!(
            printable("a\u{1b}[2Jb\nc\u{7f}\u{9b}\u{202e}d"),
            "a\\u{1b}[2Jb\\nc\\u{7f}\\u{9b}\\u{202e}d"
        );
        let value = serde_json::json!({"key": "x\u{1b}\u{7f}\u{9b}\u{202e}y"});
        let shown = printable_json(value.to_string());
        assert!(!shown.chars().any(unsafe_to_show), "{shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, value);
    }
}
