//! `sluice inspect` and `sluice runs`: what runs sent and what destinations answered.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use sluice::config::Config;
use sluice::history::History;
use sluice::inspector::Inspector;
use sluice::ledger::Ledger;
use sluice::output::Output;
use sluice::report::{printable, printable_json};

fn time(ms: u64) -> String {
    let t = sluice::clock::at_ms(ms);
    humantime::format_rfc3339_millis(t).to_string()
}

pub struct InspectArgs<'a> {
    pub sync: &'a str,
    pub run: Option<&'a str>,
    pub status: Option<u16>,
    pub limit: usize,
    pub json: bool,
}

pub fn inspect(path: &Path, args: InspectArgs<'_>, out: &mut Output) -> Result<ExitCode> {
    let config = Config::load(path)?;
    let sync = config.sync(args.sync)?;
    let ledger = Ledger::for_config_with(&config, sluice::ledger::postgres::Access::Shared)?;
    let inspector = Inspector::new(
        ledger.tree(&format!("inspector:{}", args.sync))?,
        config.inspector.clone(),
        &sync.redact,
    )
    .at(ledger.path());
    let exchanges = inspector.list(args.limit, |e| {
        args.run.is_none_or(|r| r == e.run) && args.status.is_none_or(|s| s == e.status)
    })?;
    for e in exchanges {
        if !out.is_open() {
            break;
        }
        if args.json {
            writeln!(out, "{}", printable_json(serde_json::to_string(&e)?))?;
            continue;
        }
        let status = if e.status == 0 {
            "---".to_string()
        } else {
            e.status.to_string()
        };
        writeln!(
            out,
            "{} run {} attempt {} · {} {} · {status} in {}ms · {} records · {}",
            time(e.at_ms),
            printable(&e.run),
            e.attempt,
            printable(&e.method),
            printable(&e.url),
            e.duration_ms,
            e.batch_size,
            printable(&e.verdict)
        )?;
        for (name, value) in &e.request_headers {
            writeln!(out, "  > {}: {}", printable(name), printable(value))?;
        }
        writeln!(out, "  > {}", printable(&e.request_body))?;
        for (name, value) in &e.response_headers {
            writeln!(out, "  < {}: {}", printable(name), printable(value))?;
        }
        writeln!(out, "  < {}\n", printable(&e.response_body))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn runs(
    path: &Path,
    sync: Option<&str>,
    limit: usize,
    json: bool,
    out: &mut Output,
) -> Result<ExitCode> {
    let config = Config::load(path)?;
    if let Some(name) = sync {
        config.sync(name)?;
    }
    let ledger = Ledger::for_config_with(&config, sluice::ledger::postgres::Access::Shared)?;
    let history = History::open(&ledger)?;
    let runs = history.list(sync, limit)?;
    if !json {
        writeln!(
            out,
            "{:<20} {:<18} {:<24} {:<11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "run",
            "sync",
            "started",
            "outcome",
            "read",
            "delivered",
            "rejected",
            "permanent",
            "pending",
            "requests"
        )?;
    }
    for r in runs {
        if !out.is_open() {
            break;
        }
        if json {
            writeln!(out, "{}", printable_json(serde_json::to_string(&r)?))?;
        } else {
            writeln!(
                out,
                "{:<20} {:<18} {:<24} {:<11} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
                printable(&r.run_id),
                r.sync,
                time(r.started_at_ms),
                serde_json::to_value(r.outcome)?.as_str().unwrap_or(""),
                r.read,
                r.delivered,
                r.rejected,
                r.permanent,
                r.pending,
                r.requests
            )?;
            if let Some(error) = &r.error {
                writeln!(out, "  error: {}", printable(error))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
