//! The `sluice` binary, run as an operator runs it.

use std::path::Path;

/// Runs the `sluice` binary with `args`, then `--config config`, with `env` added, and
/// waits for it.
pub async fn sluice(args: &[&str], config: &Path, env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--config")
        .arg(config)
        .envs(env.iter().copied())
        .output()
        .await
        .unwrap()
}

/// Starts the `sluice` binary with `args`, then `--config config`, its output piped, and
/// does not wait for it.
pub fn spawn_sluice(args: &[&str], config: &Path) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// [`sluice`], which must succeed: its standard output.
pub async fn sluice_ok(args: &[&str], config: &Path, env: &[(&str, &str)]) -> String {
    let output = sluice(args, config, env).await;
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The JSON object on each line (what `--json` prints).
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}
