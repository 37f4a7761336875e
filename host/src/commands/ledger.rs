//! `sluice ledger`: a person's view of every record's fate, and manual intervention.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use sluice::config::Config;
use sluice::ledger::{Entry, Ledger, Status, SyncLedger};
use sluice::output::Output;
use sluice::report::{printable, printable_json, rfc3339};

/// How `list` prints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
}

fn open(path: &Path, sync: &str) -> Result<(Ledger, SyncLedger)> {
    let config = Config::load(path)?;
    config.sync(sync)?;
    let ledger = Ledger::for_config_with(&config, sluice::ledger::postgres::Access::Shared)?;
    let records = ledger.sync(sync)?;
    Ok((ledger, records))
}

/// A CSV cell that a spreadsheet will not run: a cell starting with `=`, `+`, `-`, `@`,
/// a tab or a carriage return is a formula (or becomes one) when opened, so it gets a
/// leading `'`, as OWASP recommends against CSV injection. The `--csv` help says so.
fn csv_cell(text: &str) -> Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{text}"))
    } else {
        Cow::Borrowed(text)
    }
}

pub fn list(
    path: &Path,
    sync: &str,
    status: Option<Status>,
    code: Option<&str>,
    format: Format,
    out: &mut Output,
) -> Result<ExitCode> {
    let (_ledger, records) = open(path, sync)?;
    // Failed records are indexed: listing them reads the failures, not the whole ledger.
    let entries: Box<dyn Iterator<Item = Result<(String, Entry)>>> = match status {
        Some(s) if s.is_failed() => Box::new(records.failed()),
        _ => Box::new(records.iter()),
    };
    let selected = entries.filter(|item| {
        item.as_ref().map_or(true, |(_, e)| {
            let c = e.failure.as_ref().map_or("", |f| f.code.as_str());
            status.is_none_or(|s| s == e.status) && code.is_none_or(|want| want == c)
        })
    });
    match format {
        Format::Json => {
            for item in selected {
                // A reader that went away wants no more rows.
                if !out.is_open() {
                    break;
                }
                let (key, e) = item?;
                writeln!(
                    out,
                    "{}",
                    printable_json(sluice::report::entry_json(&key, &e).to_string())
                )?;
            }
        }
        Format::Csv => {
            let mut w = csv::Writer::from_writer(&mut *out);
            w.write_record([
                "key",
                "status",
                "code",
                "message",
                "fields",
                "attempts",
                "first_failure",
                "last_attempt",
            ])?;
            for item in selected {
                if !w.get_ref().is_open() {
                    break;
                }
                let (key, e) = item?;
                let (code, message, fields) = failure(&e);
                let (attempts, first, last) = (
                    e.attempts.to_string(),
                    rfc3339(e.first_failure_ms),
                    rfc3339(e.last_attempt_ms),
                );
                let cells = [
                    key.as_str(),
                    e.status.name(),
                    code,
                    message,
                    &fields,
                    &attempts,
                    &first,
                    &last,
                ]
                .map(csv_cell);
                w.write_record(cells.iter().map(|cell| cell.as_bytes()))?;
            }
            w.flush()?;
        }
        Format::Table => {
            writeln!(
                out,
                "{:<24} {:<10} {:<34} {:>8}  {:<20}  message",
                "key", "status", "code", "attempts", "first failure"
            )?;
            for item in selected {
                if !out.is_open() {
                    break;
                }
                let (key, e) = item?;
                let (code, message, _) = failure(&e);
                let status = match e.deleting {
                    true => format!("{} (delete)", e.status.name()),
                    false => e.status.name().to_string(),
                };
                writeln!(
                    out,
                    "{:<24} {:<10} {:<34} {:>8}  {:<20}  {}",
                    printable(&key),
                    status,
                    printable(code),
                    e.attempts,
                    rfc3339(e.first_failure_ms),
                    printable(message)
                )?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An entry's failure code, message and fields (joined with commas); empty when it has
/// none.
fn failure(e: &Entry) -> (&str, &str, String) {
    match &e.failure {
        Some(f) => (f.code.as_str(), f.message.as_str(), f.fields.join(",")),
        None => ("", "", String::new()),
    }
}

pub fn show(path: &Path, sync: &str, key: &str, out: &mut Output) -> Result<ExitCode> {
    let (_ledger, records) = open(path, sync)?;
    match records.get(key)? {
        Some(e) => {
            let mut value = sluice::report::entry_json(key, &e);
            value["payload"] = json!(e.payload);
            writeln!(
                out,
                "{}",
                printable_json(serde_json::to_string_pretty(&value)?)
            )?;
            Ok(ExitCode::SUCCESS)
        }
        None => Err(records.not_found(key)),
    }
}

pub fn stats(path: &Path, sync: &str, json: bool, out: &mut Output) -> Result<ExitCode> {
    let (_ledger, records) = open(path, sync)?;
    // Counted without holding the keys: a ledger of millions stays cheap to summarize.
    let counts = records.counts()?;
    let mut by_status: BTreeMap<&str, u64> = Status::ALL.iter().map(|s| (s.name(), 0)).collect();
    for (status, n) in &counts.by_status {
        *by_status.entry(status.name()).or_default() += n;
    }
    let by_code: BTreeMap<(String, String), u64> = counts
        .by_code
        .iter()
        .map(|((status, code), n)| ((status.name().to_string(), code.clone()), *n))
        .collect();
    if json {
        let codes: Vec<_> = by_code
            .iter()
            .map(|((status, code), n)| json!({"status": status, "code": code, "records": n}))
            .collect();
        let value = json!({"sync": sync, "by_status": by_status, "by_code": codes});
        writeln!(out, "{}", printable_json(value.to_string()))?;
    } else {
        writeln!(out, "ledger of sync `{sync}`")?;
        for (status, n) in &by_status {
            writeln!(out, "  {status:<12}{n:>10}")?;
        }
        if !by_code.is_empty() {
            writeln!(out, "  by code:")?;
            for ((status, code), n) in &by_code {
                writeln!(out, "    {status:<10}{:<36}{n:>8}", printable(code))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn resolve(
    path: &Path,
    sync: &str,
    resolution: (&str, &str, &str),
    out: &mut Output,
) -> Result<ExitCode> {
    let (key, by, why) = resolution;
    let (ledger, records) = open(path, sync)?;
    let entry = records.resolve(key, by, why)?;
    ledger.flush()?;
    writeln!(
        out,
        "{}",
        printable_json(sluice::report::entry_json(key, &entry).to_string())
    )?;
    Ok(ExitCode::SUCCESS)
}
