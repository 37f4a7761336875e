//! `sluice connector check`: tells a connector author whether a component keeps the
//! contract, before an operator ever loads it.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use sluice::conformance::{self, Options};
use sluice::output::Output;
use sluice::sandbox::SandboxLimits;

pub struct CheckArgs<'a> {
    pub file: &'a Path,
    pub settings: &'a [String],
    pub allowed_hosts: Vec<String>,
    pub memory_limit: Option<u64>,
    pub call_timeout: Option<Duration>,
}

pub fn check(args: CheckArgs<'_>, out: &mut Output) -> Result<ExitCode> {
    let wasm = std::fs::read(args.file)
        .with_context(|| format!("cannot read `{}`", args.file.display()))?;
    let mut settings = Vec::new();
    for pair in args.settings {
        let Some((key, value)) = pair.split_once('=') else {
            bail!("--settings `{pair}`: expected KEY=VALUE");
        };
        settings.push((key.trim().to_string(), value.to_string()));
    }
    let defaults = SandboxLimits::default();
    let options = Options {
        allowed_hosts: args.allowed_hosts,
        limits: SandboxLimits {
            memory: args.memory_limit.map_or(defaults.memory, |m| m as usize),
            call_timeout: args.call_timeout.unwrap_or(defaults.call_timeout),
        },
        cache_dir: sluice::config::default_cache_dir(),
        name: args
            .file
            .file_name()
            .map_or_else(|| "connector".into(), |n| n.to_string_lossy().into_owned()),
    };
    let report = conformance::check_with(&wasm, &settings, &options);
    write!(out, "{report}")?;
    Ok(if report.conformant() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
