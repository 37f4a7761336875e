//! The operator-facing edges of the `sluice` binary: config values out of range, a
//! standard output that goes away or fills up, and errors that say what is wrong, where,
//! and what to do.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::json;
use sluice::config::Config;
use sluice_sim::SimHandle;
use sluice_sim::faults::Faults;
use sluice_sim::rest::RestMode;

use crate::common;

mod broken_state;
mod config_values;
mod credentials;
mod escaping;
mod json_errors;
mod resolutions;
mod stdout;

/// Settings of the REST connector for a destination that answers per record.
const PER_RECORD: &str = "settings = { path = \"/v1/records\", results_pointer = \"/results\" }";
/// Settings of the REST connector for a destination that accepts everything.
const ACCEPT: &str = "settings = { path = \"/v1/records\" }";

/// A folder with a config of one REST sync `s` of `data` (JSONL) to `dest`, with `extra`
/// lines in its `[[sync]]` table.
fn one_sync(dest: &SimHandle, data: &str, extra: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dest.base_url(),
        "builtin:rest",
        &[("s", data, extra)],
        "",
    );
    (dir, config)
}

/// Writes a config with a connector `c` (`component`) and one sync per `(name, jsonl,
/// extra)`, each reading `NAME.jsonl`; `top` goes before the connector.
fn write_config(
    dir: &Path,
    base_url: &str,
    component: &str,
    syncs: &[(&str, &str, &str)],
    top: &str,
) -> PathBuf {
    let mut text = format!(
        "state_dir = \"state\"\ncache_dir = \"{}\"\n{top}\n[connectors.c]\ncomponent = \"{component}\"\n",
        common::cache_dir().display()
    );
    for (name, data, extra) in syncs {
        std::fs::write(dir.join(format!("{name}.jsonl")), data).unwrap();
        text.push_str(&format!(
            "\n[[sync]]\nname = \"{name}\"\nconnector = \"c\"\nsource = {{ jsonl = \"{name}.jsonl\", key = \"id\" }}\nbase_url = \"{base_url}\"\n{extra}\n"
        ));
    }
    let path = dir.join("sluice.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Where a child's standard output goes.
enum Stdout {
    /// A pipe whose reader is gone before anything is written.
    Closed,
    /// `/dev/full`: every write fails with ENOSPC.
    Full,
}

/// Runs `sluice ARGS --config CONFIG` with its standard output `to`: the exit code and
/// what it wrote on stderr.
async fn sluice_to(args: &[&str], config: &Path, to: Stdout) -> (Option<i32>, String) {
    let stdout = match to {
        Stdout::Closed => Stdio::piped(),
        Stdout::Full => std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
            .into(),
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(stdout)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    (output.status.code(), stderr)
}

/// The runs `sluice runs --json` lists: (sync, outcome), oldest first.
async fn runs(config: &Path) -> Vec<(String, String)> {
    let mut runs: Vec<(String, String)> =
        common::json_lines(&common::sluice_ok(&["runs", "--json"], config, &[]).await)
            .iter()
            .map(|r| {
                (
                    r["sync"].as_str().unwrap().to_string(),
                    r["outcome"].as_str().unwrap().to_string(),
                )
            })
            .collect();
    runs.reverse();
    runs
}

/// Two syncs of `n` records each into an accepting destination.
async fn two_syncs(n: usize) -> (SimHandle, tempfile::TempDir, PathBuf) {
    let dest = common::accepting().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &dest.base_url(),
        "builtin:rest",
        &[
            ("first", &common::contacts_jsonl("a", n), ACCEPT),
            ("second", &common::contacts_jsonl("b", n), ACCEPT),
        ],
        "",
    );
    (dest, dir, config)
}
