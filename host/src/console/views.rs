//! What the console shows and does, as JSON values: the API answers them as they are,
//! the pages render them. One place reads the ledger for both.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Deserialize;
use serde_json::{Value, json};

use std::sync::Arc;

use super::Console;
use super::actions::{self, Action};
use crate::engine::RunControl;
use crate::inspector::Redactor;
use crate::ledger::Status;
use crate::report::entry_json;
use crate::retry_job::Request;

/// Every sync: its connector and behaviour, its last run and the one going (with its
/// live counts), when it runs next and when its retry pass does, its records by status.
pub fn syncs(console: &Console) -> Result<Value> {
    let history = console.host.history()?;
    let now = crate::clock::now();
    let next = |times: &[crate::schedule::TimeOfDay]| {
        crate::schedule::next_fire(times, now)
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
    };
    let mut out = Vec::new();
    for sync in &console.config.syncs {
        let running = console.host.running(&sync.name).map(|c| {
            use crate::engine::Count;
            json!({
                "read": c.get(Count::Read),
                "delivered": c.get(Count::Delivered),
                "rejected": c.get(Count::Rejected),
                "permanent": c.get(Count::Permanent),
                "requests": c.get(Count::Requests),
            })
        });
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
            "running": running,
            "next_run": next(&sync.schedule),
            "next_retry": next(&sync.retry_job.schedule),
            "by_status": by_status,
        }));
    }
    Ok(json!({ "syncs": out }))
}

/// A sync's run history, newest first (at most `limit`), and the bars of a chart of
/// delivered, rejected and permanent records per run, oldest first, scaled to the largest.
pub fn runs(console: &Console, sync: &str, limit: usize) -> Result<Value> {
    console.config.sync(sync)?;
    let runs = console.host.history()?.list(Some(sync), limit)?;
    let most = runs
        .iter()
        .map(|r| r.delivered + r.rejected + r.permanent)
        .max()
        .unwrap_or(0)
        .max(1);
    // 120 pixels for the largest run; each part a whole number of them.
    let height = |n: u64| n * 120 / most;
    let bars: Vec<Value> = runs
        .iter()
        .rev()
        .enumerate()
        .map(|(i, r)| {
            let (d, j, p) = (height(r.delivered), height(r.rejected), height(r.permanent));
            json!({
                "x": i * 14,
                "delivered": d, "rejected": j, "permanent": p,
                "y_delivered": 120 - d, "y_rejected": 120 - d - j, "y_permanent": 120 - d - j - p,
                "title": format!("{}: {} delivered, {} rejected, {} permanent", r.run_id, r.delivered, r.rejected, r.permanent),
            })
        })
        .collect();
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            let mut value = serde_json::to_value(r).expect("a summary serializes");
            value["started"] = json!(crate::report::rfc3339(Some(r.started_at_ms)));
            value
        })
        .collect();
    Ok(json!({"sync": sync, "runs": runs, "bars": bars, "width": bars.len() * 14}))
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
    let asked = query.page.unwrap_or(1).max(1);
    console.config.sync(sync)?;
    let ledger = console.host.ledger().sync(sync)?;
    // One pass over borrowed views of the failures (the retry job's path: nothing copied
    // but the page's keys), then the page's entries read whole. The page asked for may
    // be past the end, which is known only once the pass is done: the keys before it are
    // kept a page at a time, so the last page is at hand without a second pass.
    let first = (asked - 1).saturating_mul(per_page);
    let mut by_code: BTreeMap<(Status, String), u64> = BTreeMap::new();
    let (mut total, mut shown, mut latest_page) = (0usize, Vec::new(), Vec::<String>::new());
    ledger.visit_failed(&mut |key, entry| {
        let failed_with = entry.failure.as_ref().map_or("", |f| f.code);
        *by_code
            .entry((entry.status, failed_with.to_string()))
            .or_default() += 1;
        let wanted = status.is_none_or(|s| s == entry.status)
            && code.as_deref().is_none_or(|c| c == failed_with)
            && q.as_deref().is_none_or(|q| key.contains(q));
        if wanted {
            if total >= first {
                if shown.len() < per_page {
                    shown.push(key.to_string());
                }
            } else {
                // Written over in place: at most a page of strings, whatever the page.
                match latest_page.get_mut(total % per_page) {
                    Some(kept) => {
                        kept.clear();
                        kept.push_str(key);
                    }
                    None => latest_page.push(key.to_string()),
                }
            }
            total += 1;
        }
        Ok(())
    })?;
    // A page past the end shows the last, as a page below the first shows the first.
    let last = total.div_ceil(per_page).max(1);
    let page = asked.min(last);
    if page < asked && total > 0 {
        latest_page.truncate((total - 1) % per_page + 1);
        shown = latest_page;
    }
    // The stored entries alone: what the log holds of an earlier delivery (attempts, an
    // id) is on the record's own page; reading the log here would cost a pass over every
    // delivered record for each page.
    let mut records = Vec::with_capacity(shown.len());
    for key in &shown {
        if let Some(entry) = ledger.stored(key)? {
            records.push(entry_json(key, &entry));
        }
    }
    let by_code: Vec<Value> = by_code
        .into_iter()
        .map(|((status, code), n)| json!({"status": status.name(), "code": code, "records": n}))
        .collect();
    let actions: Vec<Value> = actions::latest(console.host.ledger(), sync, 10, |_| true)?
        .iter()
        .map(Action::to_json)
        .collect();
    Ok(json!({
        "sync": sync,
        "actions": actions,
        "total": total,
        "page": page,
        "pages": last,
        "per_page": per_page,
        "by_code": by_code,
        "records": records,
    }))
}

/// One record: its entry, its payload (with the sync's redaction), and the latest
/// requests whose body carried its key.
pub fn record(console: &Console, sync: &str, key: &str) -> Result<Value> {
    let spec = console.config.sync(sync)?;
    let ledger = console.host.ledger().sync(sync)?;
    let entry = ledger.get(key)?.ok_or_else(|| ledger.not_found(key))?;
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
    let named = |a: &Action| a.keys.iter().any(|k| k == key);
    let actions = actions::latest(console.host.ledger(), sync, 20, named)?;
    value["actions"] = json!(actions.iter().map(Action::to_json).collect::<Vec<_>>());
    Ok(value)
}

/// Sends failed records again now, as `sluice retry --key` or `--code` does (permanent
/// ones included).
pub async fn retry(
    console: &Console,
    sync: &str,
    keys: Vec<String>,
    code: Option<String>,
    by: &str,
) -> Result<Value> {
    if keys.is_empty() && code.is_none() {
        anyhow::bail!("name the records to retry: some keys, or a code");
    }
    // The retry job would take the keys and pass over the code, while the actions kept
    // would say both were retried: refused, rather than done in part and told in full.
    if !keys.is_empty() && code.is_some() {
        anyhow::bail!(
            "name the records to retry by their keys or by a code, not both: send two \
             requests to retry both"
        );
    }
    let request = Request {
        keys: keys.clone(),
        codes: code.clone().into_iter().collect(),
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
    let result = match &report.run {
        Some(run) => {
            let s = &run.summary;
            format!(
                "retried {} record(s): {} delivered, {} rejected, {} permanent, {} pending",
                report.selection.selected, s.delivered, s.rejected, s.permanent, s.pending
            )
        }
        None => "nothing to retry".to_string(),
    };
    let action = Action {
        at_ms: crate::clock::now_ms(),
        by: by.to_string(),
        action: "retry".into(),
        keys,
        code,
        result: result.clone(),
    };
    actions::record(console.host.ledger(), sync, &action)?;
    Ok(json!({
        "sync": sync,
        "selection": report.selection,
        "run": report.run.map(|r| r.summary),
        "result": result,
    }))
}

/// Starts a run of the sync now, in the background (its live counts show on the syncs
/// page); refused while one is going in this process.
pub fn run_now(console: &Arc<Console>, sync: &str, by: &str) -> Result<Value> {
    console.config.sync(sync)?;
    if console.host.running(sync).is_some() {
        anyhow::bail!("a run of sync `{sync}` is going: wait for it to end");
    }
    let started = Action {
        at_ms: crate::clock::now_ms(),
        by: by.to_string(),
        action: "run".into(),
        keys: Vec::new(),
        code: None,
        result: "started".into(),
    };
    actions::record(console.host.ledger(), sync, &started)?;
    let (console, name) = (console.clone(), sync.to_string());
    tokio::spawn(async move {
        let control = RunControl {
            stop: console.stop.child_token(),
            ..RunControl::default()
        };
        let result = match console.host.run(&console.config, &name, control).await {
            Ok(report) => {
                let s = &report.summary;
                let outcome = serde_json::to_value(s.outcome).unwrap_or_default();
                format!(
                    "{}: {} read, {} delivered, {} rejected, {} permanent, {} pending",
                    outcome.as_str().unwrap_or_default(),
                    s.read,
                    s.delivered,
                    s.rejected,
                    s.permanent,
                    s.pending
                )
            }
            Err(err) => format!("could not run: {err:#}"),
        };
        let done = Action {
            at_ms: crate::clock::now_ms(),
            result,
            ..started
        };
        if let Err(err) = actions::record(console.host.ledger(), &name, &done) {
            tracing::warn!(sync = %name, "recording the console's run: {err:#}");
        }
    });
    Ok(json!({"sync": sync, "started": true}))
}

/// Marks a record handled without sending it, keeping who and why (`sluice ledger
/// resolve`).
pub fn resolve(console: &Console, sync: &str, key: &str, by: &str, note: &str) -> Result<Value> {
    console.config.sync(sync)?;
    let entry = console.host.ledger().sync(sync)?.resolve(key, by, note)?;
    let action = Action {
        at_ms: crate::clock::now_ms(),
        by: by.to_string(),
        action: "resolve".into(),
        keys: vec![key.to_string()],
        code: None,
        result: format!("resolved: {note}"),
    };
    actions::record(console.host.ledger(), sync, &action)?;
    Ok(entry_json(key, &entry))
}
