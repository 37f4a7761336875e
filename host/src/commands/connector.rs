//! `sluice connector check`: tells a connector author whether a component keeps the
//! contract, before an operator ever loads it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use sluice::conformance::{self, Options};
use sluice::output::Output;
use sluice::sandbox::{SandboxLimits, SourceRecord};

pub struct CheckArgs<'a> {
    /// A component file, or `builtin:NAME` for a bundled connector.
    pub file: &'a Path,
    /// JSONL records to check with instead of the built-in sample, and their key field.
    pub records: Option<(&'a Path, &'a str)>,
    /// `--settings`, as clap split them.
    pub settings: &'a [(String, String)],
    pub allowed_hosts: Vec<String>,
    pub memory_limit: Option<u64>,
    pub call_timeout: Option<Duration>,
}

pub fn check(args: CheckArgs<'_>, out: &mut Output) -> Result<ExitCode> {
    let shown = args.file.display().to_string();
    let builtin = shown.strip_prefix(sluice::builtin::PREFIX);
    let wasm = match builtin {
        Some(name) => sluice::builtin::component(name)
            .with_context(|| {
                let names: Vec<&str> = sluice::builtin::names().collect();
                format!(
                    "no bundled connector `{name}`: the bundled ones are {}",
                    names.join(", ")
                )
            })?
            .to_vec(),
        None => std::fs::read(args.file).with_context(|| format!("cannot read `{shown}`"))?,
    };
    let records = match args.records {
        Some((path, key)) => Some(read_records(path, key)?),
        None => None,
    };
    let defaults = SandboxLimits::default();
    let options = Options {
        allowed_hosts: args.allowed_hosts,
        limits: SandboxLimits {
            memory: args.memory_limit.map_or(defaults.memory, |m| m as usize),
            call_timeout: args.call_timeout.unwrap_or(defaults.call_timeout),
        },
        cache_dir: sluice::config::default_cache_dir(),
        name: match builtin {
            Some(_) => shown.clone(),
            None => args
                .file
                .file_name()
                .map_or_else(|| "connector".into(), |n| n.to_string_lossy().into_owned()),
        },
        records,
    };
    let report = conformance::check_with(&wasm, args.settings, &options);
    write!(out, "{report}")?;
    Ok(if report.conformant() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `--records FILE`: one JSON object a line, keyed by its `key` field (a string, or a
/// number as written); a line that is not one is an error naming it.
fn read_records(path: &Path, key: &str) -> Result<Vec<SourceRecord>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let mut records = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let at = || format!("--records `{}` line {}", path.display(), i + 1);
        let value: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
        let id = match value.get(key) {
            Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
            Some(n @ serde_json::Value::Number(_)) => n.to_string(),
            _ => bail!(
                "{}: no usable key field `{key}` (a string or a number)",
                at()
            ),
        };
        if !value.is_object() {
            bail!("{}: not a JSON object", at());
        }
        records.push(SourceRecord::new(id, line.trim().to_string()));
    }
    if records.is_empty() {
        bail!("--records `{}` holds no records", path.display());
    }
    Ok(records)
}
