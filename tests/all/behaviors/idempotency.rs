//! The idempotency key of a batch: the same on every resend of it, different for every
//! other batch, and set by the REST connector as the header its settings name.

use std::collections::BTreeMap;

use sluice_sim::faults::Faults;
use sluice_sim::rest::{self, RestConfig, RestMode};

use crate::common::{Scenario, contacts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_keeps_its_key_across_resends_and_batches_differ() {
    // Every third request fails with a 500 (before the destination applies it).
    let dest = rest::start(RestConfig {
        mode: RestMode::PerRecord,
        faults: Faults::error_burst(2, 1, 500),
        ..RestConfig::default()
    })
    .await
    .unwrap();
    let ran = Scenario::rest(&dest.base_url())
        .settings(r#"{ path = "/v1/records", results_pointer = "/results", idempotency_header = "Idempotency-Key" }"#)
        .records(contacts(60))
        .batches(10, 1)
        .fast_retries()
        .run()
        .await;
    let s = ran.summary();
    assert_eq!((s.delivered, s.pending), (60, 0), "{s:?}");
    assert!(s.transient_failures > 0, "some batches were sent again");

    let requests = dest.requests();
    let mut key_of_batch: BTreeMap<Vec<String>, String> = BTreeMap::new();
    for request in &requests {
        let key = request
            .idempotency_key
            .clone()
            .expect("every request carries the batch's key");
        assert!(key.starts_with("sluice-"), "{key}");
        let first = key_of_batch
            .entry(request.keys.clone())
            .or_insert(key.clone());
        assert_eq!(*first, key, "a resend of {:?} kept its key", request.keys);
    }
    assert_eq!(key_of_batch.len(), 6, "six batches");
    let distinct: std::collections::BTreeSet<&String> = key_of_batch.values().collect();
    assert_eq!(distinct.len(), 6, "each batch its own key");
    assert!(requests.len() > 6);
}
