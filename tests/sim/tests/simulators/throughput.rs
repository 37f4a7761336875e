//! How fast the accept-all path takes a million records from eight concurrent clients.
//! Ignored by default; run it with
//! `cargo test -p sluice-sim --release --test simulators -- --ignored --nocapture`.

use std::time::Instant;

use sluice_sim::rest::{self, RestConfig, RestMode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: a million records"]
async fn accept_all_takes_a_million_records() {
    const WORKERS: usize = 8;
    const BATCH: usize = 1_000;
    const BATCHES_PER_WORKER: usize = 125;
    let config = RestConfig {
        mode: RestMode::AcceptAll,
        record_keys: false,
        ..Default::default()
    };
    let sim = rest::start(config).await.unwrap();
    let url = format!("{}/v1/records", sim.base_url());
    let client = crate::support::client();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..WORKERS {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for batch in 0..BATCHES_PER_WORKER {
                let records: Vec<String> = (0..BATCH)
                    .map(|i| {
                        format!(
                            r#"{{"id":"acc-{worker}-{batch}-{i}","name":"Account {i}","email":"user{i}@example.com","industry":"Retail"}}"#
                        )
                    })
                    .collect();
                let body = format!("[{}]", records.join(","));
                let response = client.post(&url).body(body).send().await.unwrap();
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let stats = sim.stats();
    assert_eq!(
        stats.records_stored,
        (WORKERS * BATCH * BATCHES_PER_WORKER) as u64
    );
    println!(
        "{} records in {} requests: {elapsed:?}",
        stats.records_received, stats.requests
    );
}
