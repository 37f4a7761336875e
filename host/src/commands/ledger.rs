//! `sluice ledger`: a person's view of every record's fate, and manual intervention.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use sluice::config::Config;
use sluice::ledger::{Entry, Ledger, Status, SyncLedger};

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
    let ledger = Ledger::open(&config.state_dir)?;
    let records = ledger.sync(sync)?;
    Ok((ledger, records))
}

fn time(ms: Option<u64>) -> String {
    ms.map(|ms| {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
        humantime::format_rfc3339_seconds(t).to_string()
    })
    .unwrap_or_default()
}

fn entry_json(key: &str, e: &Entry) -> serde_json::Value {
    json!({
        "key": key,
        "status": e.status.name(),
        "code": e.failure.as_ref().map(|f| f.code.clone()),
        "message": e.failure.as_ref().map(|f| f.message.clone()),
        "fields": e.failure.as_ref().map(|f| f.fields.clone()).unwrap_or_default(),
        "attempts": e.attempts,
        "first_failure": e.first_failure_ms.map(|ms| time(Some(ms))),
        "last_attempt": e.last_attempt_ms.map(|ms| time(Some(ms))),
        "destination_id": e.destination_id,
        "resolution": e.resolution.as_ref().map(|r| json!({"by": r.by, "why": r.why, "at": time(Some(r.at_ms))})),
    })
}

pub fn list(
    path: &Path,
    sync: &str,
    status: Option<&str>,
    code: Option<&str>,
    format: Format,
) -> Result<ExitCode> {
    let (_ledger, records) = open(path, sync)?;
    let status = status.map(Status::parse).transpose()?;
    let mut csv = (format == Format::Csv).then(|| csv::Writer::from_writer(std::io::stdout()));
    if let Some(w) = &mut csv {
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
    }
    if format == Format::Table {
        println!(
            "{:<24} {:<10} {:<34} {:>8}  {:<20}  message",
            "key", "status", "code", "attempts", "first failure"
        );
    }
    // Failed records are indexed: listing them reads the failures, not the whole ledger.
    let entries: Box<dyn Iterator<Item = Result<(String, Entry)>>> = match status {
        Some(s) if s.is_failed() => Box::new(records.failed()),
        _ => Box::new(records.iter()),
    };
    for item in entries {
        let (key, e) = item?;
        if status.is_some_and(|s| s != e.status) {
            continue;
        }
        let c = e.failure.as_ref().map(|f| f.code.as_str()).unwrap_or("");
        if code.is_some_and(|want| want != c) {
            continue;
        }
        let message = e.failure.as_ref().map(|f| f.message.as_str()).unwrap_or("");
        let fields = e
            .failure
            .as_ref()
            .map(|f| f.fields.join(","))
            .unwrap_or_default();
        match format {
            Format::Json => println!("{}", entry_json(&key, &e)),
            Format::Csv => csv.as_mut().unwrap().write_record([
                key.as_str(),
                e.status.name(),
                c,
                message,
                &fields,
                &e.attempts.to_string(),
                &time(e.first_failure_ms),
                &time(e.last_attempt_ms),
            ])?,
            Format::Table => println!(
                "{key:<24} {:<10} {c:<34} {:>8}  {:<20}  {message}",
                e.status.name(),
                e.attempts,
                time(e.first_failure_ms)
            ),
        }
    }
    if let Some(mut w) = csv {
        w.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn show(path: &Path, sync: &str, key: &str) -> Result<ExitCode> {
    let (_ledger, records) = open(path, sync)?;
    match records.get(key)? {
        Some(e) => {
            let mut value = entry_json(key, &e);
            value["payload"] = json!(e.payload);
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!("no record with key `{key}` in the ledger of sync `{sync}`"),
    }
}

pub fn stats(path: &Path, sync: &str, json: bool) -> Result<ExitCode> {
    let (_ledger, records) = open(path, sync)?;
    let mut by_status: BTreeMap<&str, u64> = Status::ALL.iter().map(|s| (s.name(), 0)).collect();
    let mut by_code: BTreeMap<(String, String), u64> = BTreeMap::new();
    for item in records.iter() {
        let (_, e) = item?;
        *by_status.entry(e.status.name()).or_default() += 1;
        if let Some(f) = &e.failure
            && e.status != Status::Delivered
        {
            *by_code
                .entry((e.status.name().to_string(), f.code.clone()))
                .or_default() += 1;
        }
    }
    if json {
        let codes: Vec<_> = by_code
            .iter()
            .map(|((status, code), n)| json!({"status": status, "code": code, "records": n}))
            .collect();
        println!(
            "{}",
            json!({"sync": sync, "by_status": by_status, "by_code": codes})
        );
    } else {
        println!("ledger of sync `{sync}`");
        for (status, n) in &by_status {
            println!("  {status:<12}{n:>10}");
        }
        if !by_code.is_empty() {
            println!("  by code:");
            for ((status, code), n) in &by_code {
                println!("    {status:<10}{code:<36}{n:>8}");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn resolve(path: &Path, sync: &str, key: &str, by: &str, why: &str) -> Result<ExitCode> {
    let (ledger, records) = open(path, sync)?;
    let entry = records.resolve(key, by, why)?;
    ledger.flush()?;
    println!("{}", entry_json(key, &entry));
    Ok(ExitCode::SUCCESS)
}
