//! Fencing: a worker paused past its lease while another takes its work over, then
//! resumed, settles nothing more and sends nothing more once it learns so.

use super::*;

const RECORDS: usize = 3_000;

/// When a JSON log line was written.
fn logged_at(line: &Value) -> SystemTime {
    let text = line["timestamp"].as_str().expect("a timestamp");
    chrono::DateTime::parse_from_rfc3339(text).unwrap().into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_resumed_after_its_lease_moved_on_sends_and_settles_nothing_more() {
    let Some(pg) = Postgres::start() else { return };
    let dest = slow_destination(1, Duration::from_millis(100)).await;
    let schema = "pool_fence";
    let setup = pool_scenario(&dest.base_url(), common::contacts(RECORDS), 1, schema)
        .batches(20, 2)
        .setup();
    let config = setup.config_path();
    let paused = Worker::start(&config, &pg, "paused", "2s");
    enqueue(&config, &pg).await;
    let paused_token = format!("Bearer {}", paused.token);
    let from_paused = |dest: &sluice_sim::SimHandle| -> Vec<sluice_sim::RequestRecord> {
        dest.requests()
            .into_iter()
            .filter(|r| r.authorization.as_deref() == Some(paused_token.as_str()))
            .collect()
    };
    wait_for("the first worker sending", Duration::from_secs(60), || {
        let sent = from_paused(&dest).len() >= 3;
        async move { sent }
    })
    .await;
    let first = rows(&pg, schema).await.pop().unwrap();
    paused.signal("STOP");

    let taker = Worker::start(&config, &pg, "taker", "2s");
    wait_for("the work taken over", Duration::from_secs(30), || {
        let (pg, first) = (&pg, &first);
        async move {
            rows(pg, schema)
                .await
                .iter()
                .any(|r| r.generation > first.generation && r.owner != first.owner)
        }
    })
    .await;
    paused.signal("CONT");

    wait_for(
        "the paused worker learning its lease moved on",
        Duration::from_secs(30),
        || {
            let learned = paused.log_text().contains("moved to another worker");
            async move { learned }
        },
    )
    .await;
    let learned_at = paused
        .log()
        .iter()
        .filter(|line| line.to_string().contains("moved to another worker"))
        .map(logged_at)
        .min()
        .unwrap();
    wait_for("the work done", Duration::from_secs(120), || {
        let pg = &pg;
        async move { rows(pg, schema).await.iter().all(|r| r.state == "done") }
    })
    .await;

    // Nothing of the paused worker's arrived after it learned (a request it had already
    // written may land a moment later: 100 ms of slack).
    let late: Vec<_> = from_paused(&dest)
        .into_iter()
        .filter(|r| r.arrived_at > learned_at + Duration::from_millis(100))
        .map(|r| r.seq)
        .collect();
    assert!(
        late.is_empty(),
        "requests from the fenced worker after it learned: {late:?}"
    );
    let done = rows(&pg, schema).await.pop().unwrap();
    assert_ne!(
        done.owner, first.owner,
        "the taker finished the work: {done:?}"
    );
    // Every record is at the destination and in the ledger, whoever sent it.
    let stored = dest.stored();
    assert_eq!(stored.len(), RECORDS);
    let at_destination: std::collections::BTreeSet<String> = stored.keys().cloned().collect();
    assert_eq!(delivered_keys(&pg, schema).await, at_destination);
    let log = paused.log_text();
    assert!(paused.stop().await.success(), "{log}");
    let log = taker.log_text();
    assert!(taker.stop().await.success(), "{log}");
}
