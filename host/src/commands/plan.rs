//! `sluice plan`: what `sluice run` would do, for each sync of a config (or one).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use sluice::config::Config;
use sluice::output::Output;
use sluice::sync::{Host, RunOptions};

pub async fn plan(
    path: &Path,
    only: Option<&str>,
    options: RunOptions,
    json: bool,
    out: &mut Output,
) -> Result<ExitCode> {
    let config = Config::load(path)?;
    let names = super::sync_names(&config, only)?;
    let host = Host::new(&config)?;
    let mut code = ExitCode::SUCCESS;
    for name in names {
        match host.plan(&config, &name, options).await {
            Ok(plan) if json => writeln!(out, "{}", serde_json::to_string(&plan)?)?,
            Ok(plan) => write!(out, "{}", plan.render())?,
            // A sync a run would refuse is reported; the others are still planned.
            Err(err) => code = super::sync_failed(&name, &err, json, out)?,
        }
        out.push();
    }
    Ok(code)
}
