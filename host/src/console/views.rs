//! What the console shows and does, as JSON values: the API answers them as they are,
//! the pages render them. One place reads the ledger for both.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Console;
use crate::concern::{Concern, ErrorKind};
use crate::engine::RunControl;
use crate::inspector::Redactor;
use crate::ledger::Status;
use crate::report::entry_json;
use crate::retry_job::Request;

/// Every sync: its connector and behaviour, its last run, its records by status.
pub fn syncs(console: &Console) -> Result<Value> {
    let history = console.host.history()?;
    let mut out = Vec::new();
    for sync in &console.config.syncs {
        let counts = console.host.ledger().sync(&sync.name)?.counts()?;
        let by_status: BTreeMap<&str, u64> = Status::ALL
            .iter()
            .map(|s| (s.name(), counts.by_status.get(s).copied().unwrap_or(0)))
            .collect();
        out.push(json!({
            "sync": sync.name,
            "connector": sync.connector,
            "behavior": sync.behavior.name(),
            "last_run": history.list(Some(&sync.name), 1)?.into_iter().next(),
            "by_status": by_status,
        }));
    }
    Ok(json!({ "syncs": out }))
}

/// Which failures to show.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FailureQuery {
    /// `rejected`, `pending` or `permanent`; every failed status when absent or empty.
    pub status: Option<String>,
    pub code: Option<String>,
    /// Keys containing this text.
    pub q: Option<String>,
    pub page: Option<usize>,
    pub per_page: Option<usize>,
}

/// A sync's failed records: counts by status and code, and one page of them in key order,
/// filtered by status, code and a part of the key.
pub fn failures(console: &Console, sync: &str, query: &FailureQuery) -> Result<Value> {
    let nonempty = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
    let status = nonempty(&query.status)
        .as_deref()
        .map(Status::parse)
        .transpose()?;
    let (code, q) = (nonempty(&query.code), nonempty(&query.q));
    let per_page = query.per_page.unwrap_or(50).clamp(1, 500);
    let page = query.page.unwrap_or(1).max(1);
    console.config.sync(sync)?;
    let ledger = console.host.ledger().sync(sync)?;
    let mut by_code: BTreeMap<(Status, String), u64> = BTreeMap::new();
    let (mut total, mut records) = (0usize, Vec::new());
    for item in ledger.failed() {
        let (key, entry) = item?;
        let failed_with = entry.failure.as_ref().map_or("", |f| f.code.as_str());
        *by_code
            .entry((entry.status, failed_with.to_string()))
            .or_default() += 1;
        let wanted = status.is_none_or(|s| s == entry.status)
            && code.as_deref().is_none_or(|c| c == failed_with)
            && q.as_deref().is_none_or(|q| key.contains(q));
        if !wanted {
            continue;
        }
        total += 1;
        if total > (page - 1) * per_page && records.len() < per_page {
            records.push(entry_json(&key, &entry));
        }
    }
    let by_code: Vec<Value> = by_code
        .into_iter()
        .map(|((status, code), n)| json!({"status": status.name(), "code": code, "records": n}))
        .collect();
    Ok(json!({
        "sync": sync,
        "total": total,
        "page": page,
        "per_page": per_page,
        "by_code": by_code,
        "records": records,
    }))
}

/// One record: its entry, its payload (with the sync's redaction), and the latest
/// requests whose body carried its key.
pub fn record(console: &Console, sync: &str, key: &str) -> Result<Value> {
    let spec = console.config.sync(sync)?;
    let entry = console.host.ledger().sync(sync)?.get(key)?.ok_or_else(|| {
        anyhow::Error::new(
            Concern::new(
                ErrorKind::NotFound,
                format!("no record with key `{key}` in the ledger of sync `{sync}`"),
            )
            .sync(sync)
            .key(key),
        )
    })?;
    let mut value = entry_json(key, &entry);
    let redactor = Redactor::new(&spec.redact);
    value["payload"] = json!(
        entry
            .payload
            .as_ref()
            .map(|p| redactor.body(p.as_bytes(), usize::MAX))
    );
    // A key appears in a JSON body as a string; bodies are stored redacted.
    let quoted = serde_json::to_string(key)?;
    let inspector = console.host.inspector(&console.config, sync)?;
    let exchanges: Vec<Value> = inspector
        .list(20, |e| e.request_body.contains(&quoted))?
        .into_iter()
        .map(|e| {
            json!({
                "at": crate::report::rfc3339(Some(e.at_ms)),
                "run": e.run,
                "attempt": e.attempt,
                "method": e.method,
                "url": e.url,
                "status": e.status,
                "verdict": e.verdict,
            })
        })
        .collect();
    value["exchanges"] = json!(exchanges);
    Ok(value)
}

/// Sends failed records again now, as `sluice retry --key` or `--code` does (permanent
/// ones included).
pub async fn retry(
    console: &Console,
    sync: &str,
    keys: Vec<String>,
    code: Option<String>,
) -> Result<Value> {
    if keys.is_empty() && code.is_none() {
        anyhow::bail!("name the records to retry: some keys, or a code");
    }
    let request = Request {
        keys,
        codes: code.into_iter().collect(),
        include_permanent: true,
        ..Request::default()
    };
    let control = RunControl {
        stop: console.stop.child_token(),
        ..RunControl::default()
    };
    let report = console
        .host
        .retry(&console.config, sync, &request, control)
        .await?;
    Ok(json!({
        "sync": sync,
        "selection": report.selection,
        "run": report.run.map(|r| r.summary),
    }))
}

/// Marks a record handled without sending it, keeping who and why (`sluice ledger
/// resolve`).
pub fn resolve(console: &Console, sync: &str, key: &str, by: &str, note: &str) -> Result<Value> {
    console.config.sync(sync)?;
    let entry = console.host.ledger().sync(sync)?.resolve(key, by, note)?;
    Ok(entry_json(key, &entry))
}
