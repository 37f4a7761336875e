//! `sluice demo`: a real sync, with no set-up, of the example accounts through the bundled
//! Salesforce connector into a simulated Salesforce (in this process, on loopback) that
//! throttles, locks rows, expires sessions, fails in bursts and refuses invalid data.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sluice_sim::faults::{ErrorBurst, Faults, Latency, LimitStyle, RateLimit, RetryAfterStyle};
use sluice_sim::salesforce::{self, SalesforceConfig};
use sluice_sim::validation::{CustomRule, Rules};
use sluice_sim::{AuthConfig, OAuthClient};

use crate::config::Config;
use crate::engine::{FailureList, RunControl};
use crate::sync::Host;

/// The example accounts, the same file as `examples/data/accounts.jsonl`.
const ACCOUNTS: &str = include_str!("../../examples/data/accounts.jsonl");

/// The simulated OAuth2 client. Not secrets: they exist only inside the demo's simulator.
const CLIENT: (&str, &str, &str) = ("demo-client", "demo-client-secret", "demo-refresh-token");
const ENV: (&str, &str, &str) = (
    "SLUICE_DEMO_CLIENT_ID",
    "SLUICE_DEMO_CLIENT_SECRET",
    "SLUICE_DEMO_REFRESH_TOKEN",
);

/// Puts the simulated client's credentials where the config says to find them. Must run
/// before any other thread starts (setting the environment is not thread-safe).
pub fn prepare_environment() {
    // SAFETY: called from `main` before the async runtime or any other thread exists.
    unsafe {
        std::env::set_var(ENV.0, CLIENT.0);
        std::env::set_var(ENV.1, CLIENT.1);
        std::env::set_var(ENV.2, CLIENT.2);
    }
}

/// The simulated Salesforce: its validation rules and its faults.
fn destination() -> SalesforceConfig {
    let parents: BTreeSet<String> = (0..50).map(|i| format!("001PARENT{i:05}")).collect();
    SalesforceConfig {
        faults: Faults {
            seed: 7,
            lock_probability: 0.03,
            rate_limit: Some(RateLimit {
                requests: 12,
                window: Duration::from_secs(1),
                style: LimitStyle::TooManyRequests,
                retry_after: RetryAfterStyle::Seconds,
            }),
            error_burst: Some(ErrorBurst {
                every: 25,
                length: 2,
                status: 503,
            }),
            latency: Some(Latency {
                every: 7,
                delay: Duration::from_millis(80),
            }),
        },
        rules: Rules {
            required: vec!["Name".into()],
            emails: vec!["Email".into()],
            max_len: vec![("Name".into(), 80)],
            custom: vec![CustomRule {
                field: "AnnualRevenue".into(),
                forbidden_value: serde_json::json!(-1),
                message: "Annual revenue cannot be negative".into(),
            }],
            parent_field: Some("ParentCrmId".into()),
            known_parents: Some(parents),
            ..Rules::default()
        },
        auth: Some(AuthConfig {
            tokens: Vec::new(),
            session_requests: Some(20),
            oauth: Some(OAuthClient {
                client_id: CLIENT.0.into(),
                client_secret: CLIENT.1.into(),
                refresh_token: CLIENT.2.into(),
            }),
        }),
        port: 0,
    }
}

fn config_text(base_url: &str, port: u16) -> String {
    format!(
        r#"
state_dir = "state"

[connectors.salesforce]
component = "builtin:salesforce"
allowed_hosts = ["127.0.0.1:{port}"]

[[sync]]
name = "accounts"
connector = "salesforce"
source = {{ jsonl = "accounts.jsonl", key = "id" }}
base_url = "{base_url}"
auth = {{ oauth2 = {{ token_url = "{base_url}/oauth2/token", client_id_env = "{}", client_secret_env = "{}", refresh_token_env = "{}" }} }}
settings = {{ object = "Account", external_id_field = "External_Id__c", parent_field = "ParentCrmId" }}
batch_size = 100
concurrency = 4

[sync.retry]
initial_backoff = "50ms"
max_backoff = "1s"
"#,
        ENV.0, ENV.1, ENV.2
    )
}

pub async fn run(json: bool, out: &mut crate::output::Output) -> Result<ExitCode> {
    use std::io::Write;
    let sim = salesforce::start(destination())
        .await
        .context("starting the simulated Salesforce")?;
    let dir = tempfile_dir()?;
    std::fs::write(dir.join("accounts.jsonl"), ACCOUNTS)?;
    let config_path = dir.join("demo.toml");
    std::fs::write(
        &config_path,
        config_text(&sim.base_url(), sim.addr().port()),
    )?;
    let config = Config::load(&config_path)?;

    if !json {
        writeln!(
            out,
            "Syncing {} example accounts through builtin:salesforce into a simulated Salesforce at {}",
            ACCOUNTS.lines().count(),
            sim.base_url()
        )?;
        writeln!(
            out,
            "(it throttles at 12 requests/s, locks 3% of rows, expires sessions every 20 requests,"
        )?;
        writeln!(
            out,
            " fails in 503 bursts, and validates names, emails, revenue and parent ids)\n"
        )?;
    }

    let host = Host::new(&config)?;
    let failures = Arc::new(FailureList::new(10_000));
    let control = RunControl {
        sinks: vec![failures.clone()],
        ..RunControl::default()
    };
    let report = host.run(&config, "accounts", control).await?;
    let stats = sim.stats();
    let stored = sim.stored().len() as u64;
    let _ = std::fs::remove_dir_all(&dir);

    if json {
        writeln!(out, "{}", serde_json::to_string(&report.summary)?)?;
    } else {
        write!(out, "{}", crate::report::render(&report, &failures.take()))?;
        let s = &report.summary;
        writeln!(
            out,
            "\nThe destination saw {} requests, as Sluice counted them: {} carrying records and {} \
             to its token endpoint\n({} rate limited, {} session expiries, {} server errors)",
            stats.requests,
            s.requests,
            s.token_requests,
            stats.rate_limited,
            stats.session_expired,
            stats.server_errors
        )?;
        writeln!(out, "and holds {stored} accounts.")?;
    }
    sim.shutdown().await;

    let s = &report.summary;
    if s.outcome != crate::engine::Outcome::Completed {
        anyhow::bail!(
            "the demo run did not complete: {}",
            s.error.as_deref().unwrap_or("?")
        );
    }
    if stored != s.delivered || s.pending != 0 {
        anyhow::bail!(
            "the destination holds {stored} accounts but {} were reported delivered ({} pending)",
            s.delivered,
            s.pending
        );
    }
    if !json {
        writeln!(
            out,
            "Every delivered account is at the destination; every other one is accounted for above."
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A fresh private folder for the demo's config and data.
fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("sluice-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
