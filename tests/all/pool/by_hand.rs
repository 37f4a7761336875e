//! Partitions run by hand (`sluice run --partition I/N`), a worker's SIGTERM handing its
//! work back, and the health endpoints a deployment probes.

use super::*;

/// Eight partitions run one by one deliver every record once, and each summary names its
/// partition; the embedded store works as well as the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_run_by_hand_deliver_every_record_once() {
    let dest = common::accepting().await;
    let setup = Scenario::contacts_to(&dest.base_url(), 400).setup();
    let config = setup.config_path();
    let mut read = 0;
    for index in 0..8 {
        let partition = format!("{index}/8");
        let out =
            common::sluice_ok(&["run", "--json", "--partition", &partition], &config, &[]).await;
        let summary: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(summary["partition"], partition.as_str());
        assert_eq!(summary["read"], summary["delivered"], "{summary}");
        read += summary["read"].as_u64().unwrap();
    }
    assert_eq!(read, 400, "every key in exactly one partition");
    assert_eq!(dest.stats().records_received, 400);
    assert_eq!(dest.stored().len(), 400);
    // Run whole again: nothing changed.
    let out = common::sluice_ok(&["run", "--json"], &config, &[]).await;
    let summary: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (summary["unchanged"].as_u64(), summary.get("partition")),
        (Some(400), None)
    );
    let bad = common::sluice(&["run", "--partition", "8/8"], &config, &[]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a partition"));
}

/// SIGTERM: the worker stops its run within the grace period, gives the work back (due
/// again at once, not after the lease), and exits 0; another worker finishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_with_sigterm_hands_its_work_back_at_once() {
    let Some(pg) = Postgres::start() else { return };
    let dest = slow_destination(1, Duration::from_millis(100)).await;
    let schema = "pool_term";
    let setup = pool_scenario(&dest.base_url(), common::contacts(2_000), 1, schema)
        .batches(20, 2)
        .setup();
    let config = setup.config_path();
    // A lease far longer than the test: only a hand-back lets the next worker in.
    let first = Worker::start(&config, &pg, "first", "600s");
    enqueue(&config, &pg).await;
    wait_for("the first worker sending", Duration::from_secs(60), || {
        let sent = dest.stats().records_received > 0;
        async move { sent }
    })
    .await;
    let stopping = Instant::now();
    let log = first.log_text();
    assert!(first.stop().await.success(), "{log}");
    assert!(
        stopping.elapsed() < Duration::from_secs(10),
        "stopped within the grace period"
    );
    let row = rows(&pg, schema).await.pop().unwrap();
    assert_eq!(
        (row.state.as_str(), row.owner.as_deref()),
        ("due", None),
        "{row:?}"
    );

    let second = Worker::start(&config, &pg, "second", "600s");
    wait_for("the work done", Duration::from_secs(120), || {
        let pg = &pg;
        async move { rows(pg, schema).await.iter().all(|r| r.state == "done") }
    })
    .await;
    assert_eq!(dest.stored().len(), 2_000);
    let at_destination: std::collections::BTreeSet<String> =
        dest.stored().keys().cloned().collect();
    assert_eq!(delivered_keys(&pg, schema).await, at_destination);
    assert!(second.stop().await.success());
}

/// `/healthz` answers while the process lives; `/readyz` once it takes work; both beside
/// `/metrics` on the metrics address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_answers_health_and_readiness_probes() {
    let dest = common::accepting().await;
    let setup = Scenario::contacts_to(&dest.base_url(), 5)
        .sync("schedule = [\"03:00\"]")
        .setup();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["serve", "--metrics-addr", &addr, "--config"])
        .arg(setup.config_path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let get = |path: &str| {
        let url = format!("http://{addr}{path}");
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .ok()
                .map(|r| r.status().as_u16())
        }
    };
    wait_for("readiness", Duration::from_secs(30), || {
        let ready = get("/readyz");
        async move { ready.await == Some(200) }
    })
    .await;
    assert_eq!(get("/healthz").await, Some(200));
    assert_eq!(get("/metrics").await, Some(200));
    assert_eq!(get("/nothing").await, Some(404));
    let pid = child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success());
}
