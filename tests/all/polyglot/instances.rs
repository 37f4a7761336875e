//! Instances are reused: one per worker, whatever the number of batches.

use super::*;

/// Runs the `sluice` binary on 1,000 records in batches of 50 with 3 workers and counts
/// the connector's own "configured" log line: `configure` runs once per instance, so the
/// count is the number of instances. The Python component takes about a millisecond to
/// instantiate; that cost is paid once per worker, not once per batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_worker_instantiates_its_connector_once() {
    let hub = hubspot_sim(|_| {}).await;
    let couch = couch_sim(|_| {}).await;
    for (name, scenario) in [
        ("python-hubspot", to_hubspot(&hub).records(contacts(1000))),
        ("js-couchdb", to_couch(&couch).records(documents(1000))),
    ] {
        let setup = scenario.batches(50, 3).setup();
        let path = setup.config_path();
        let env = [
            ("RUST_LOG", "warn,sluice::connector=debug"),
            ("NO_COLOR", "1"),
        ];
        let output = common::sluice(&["run", "--json"], &path, &env).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{name}: {stderr}");
        let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            (summary["delivered"].as_u64(), summary["requests"].as_u64()),
            (Some(1000), Some(20)),
            "{name}"
        );
        let instances = stderr.lines().filter(|l| l.contains("configured:")).count();
        assert_eq!(
            instances, 3,
            "{name}: one instance per worker for 20 batches:\n{stderr}"
        );
    }
    assert_eq!(hub.stored().len(), 1000);
    assert_eq!(couch.stored().len(), 1000);
}
