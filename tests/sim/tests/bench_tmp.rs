use sluice_sim::rest::{self, RestConfig, RestMode};
use std::time::Instant;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn bench() {
    let sim = rest::start(RestConfig {
        mode: RestMode::AcceptAll,
        record_keys: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("{}/v1/records", sim.base_url());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let per_worker = 125_000usize;
    let batch = 1000usize;
    // Pre-build bodies so the client side costs little.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for b in 0..per_worker / batch {
                let mut body = String::from("[");
                for i in 0..batch {
                    if i > 0 { body.push(','); }
                    body.push_str(&format!("{{\"id\":\"acc-{w}-{b}-{i}\",\"name\":\"Account {i}\",\"email\":\"user{i}@example.com\",\"industry\":\"Retail\"}}"));
                }
                body.push(']');
                let r = client.post(&url).body(body).send().await.unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    let stats = sim.stats();
    println!("stored {} in {:?}", stats.records_stored, elapsed);
    let t = Instant::now();
    let n = sim.stored().len();
    println!("stored() {} in {:?}", n, t.elapsed());
    let t = Instant::now();
    let n = sim.stats().records_stored;
    println!("stored() {} in {:?}", n, t.elapsed());
}
