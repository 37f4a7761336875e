use serde_json::{Value, json};
use sluice_sim::SimHandle;
use sluice_sim::faults::Faults;
use sluice_sim::rest::{self, RestConfig, RestMode};
use sluice_sim::validation::Rules;

use crate::support::{call, results};

async fn start(config: RestConfig) -> SimHandle {
    rest::start(config).await.unwrap()
}

/// The simulator answering in `mode`, requiring a `name` and checking `email`.
async fn checking_emails(mode: RestMode) -> SimHandle {
    start(RestConfig {
        mode,
        rules: email_rules(),
        ..Default::default()
    })
    .await
}

async fn post(sim: &SimHandle, body: &Value) -> (u16, Value) {
    let reply = call(sim, "POST", "/v1/records", &body.to_string()).await;
    (reply.status, reply.body)
}

/// The status and the error code of an answer in the REST dialect.
fn refusal(status: u16, body: &Value) -> (u16, Option<&str>) {
    (status, body["error"]["code"].as_str())
}

fn email_rules() -> Rules {
    Rules {
        required: vec!["name".into()],
        emails: vec!["email".into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn accept_all_stores_everything_by_key() {
    let sim = checking_emails(RestMode::AcceptAll).await;
    let (status, body) = post(
        &sim,
        &json!([{"id": "a", "email": "not an email"}, {"id": 42, "n": 1}]),
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"accepted": 2})),
        "rules are skipped"
    );
    let (status, _) = post(&sim, &json!([{"id": "a", "email": "x@y.z"}])).await;
    assert_eq!(status, 200);
    let stored = sim.stored();
    assert_eq!(
        stored["a"],
        json!({"id": "a", "email": "x@y.z"}),
        "a later record replaces the stored one"
    );
    assert_eq!(stored["42"], json!({"id": 42, "n": 1}));
    assert_eq!(sim.requests()[0].keys, ["a", "42"]);

    let (status, body) = post(&sim, &json!([{"id": "b"}, {"name": "no key"}])).await;
    assert_eq!(
        refusal(status, &body),
        (400, Some("REQUIRED_FIELD_MISSING"))
    );
    let (status, body) = post(&sim, &json!([{"id": "b"}, 7])).await;
    assert_eq!(refusal(status, &body), (400, Some("BAD_JSON")));
    let reply = call(&sim, "POST", "/v1/records", "[{\"id\": ").await;
    assert_eq!(refusal(reply.status, &reply.body), (400, Some("BAD_JSON")));
    assert!(
        !sim.stored().contains_key("b"),
        "a refused batch stores nothing"
    );

    let stats = sim.stats();
    assert_eq!(
        (
            stats.requests,
            stats.records_received,
            stats.records_stored,
            stats.batch_rejections
        ),
        (5, 5, 2, 1),
        "bodies that do not parse carry no records"
    );
}

#[tokio::test]
async fn accept_all_under_concurrency_without_key_log() {
    let config = RestConfig {
        mode: RestMode::AcceptAll,
        record_keys: false,
        ..Default::default()
    };
    let sim = start(config).await;
    let url = format!("{}/v1/records", sim.base_url());
    let client = crate::support::client();
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for batch in 0..10 {
                let records: Vec<Value> = (0..250)
                    .map(|i| json!({"id": format!("{worker}-{batch}-{i}"), "v": i}))
                    .collect();
                let body = serde_json::to_string(&records).unwrap();
                let response = client.post(&url).body(body).send().await.unwrap();
                assert_eq!(response.status(), 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stats = sim.stats();
    assert_eq!(
        (stats.requests, stats.records_received, stats.records_stored),
        (80, 20_000, 20_000)
    );
    assert!(sim.requests().iter().all(|r| r.keys.is_empty()));
    let seqs: Vec<u64> = sim.requests().iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (0..80).collect::<Vec<_>>());
}

#[tokio::test]
async fn per_record_results_by_position_in_an_envelope() {
    let config = RestConfig {
        rules: email_rules(),
        records_field: Some("data".into()),
        key_field: "external_id".into(),
        path: "/api/contacts".into(),
        ..Default::default()
    };
    let sim = start(config).await;
    let body = json!({"data": [
        {"external_id": "c1", "name": "Ann", "email": "ann@example.com"},
        {"external_id": "c2", "name": "Bob", "email": "bob@example"},
        {"external_id": "c3", "email": "cy@example.com"},
        {"name": "no key"},
    ]});
    let reply = call(&sim, "PUT", "/api/contacts", &body.to_string()).await;
    assert_eq!(reply.status, 200);
    let results = &reply.body["results"];
    assert_eq!(
        results[0],
        json!({"id": rest::record_id("c1"), "error": null})
    );
    assert_eq!(results[1]["id"], Value::Null);
    assert_eq!(results[1]["error"]["code"], "INVALID_EMAIL_ADDRESS");
    assert_eq!(results[1]["error"]["fields"], json!(["email"]));
    assert_eq!(results[2]["error"]["code"], "REQUIRED_FIELD_MISSING");
    assert_eq!(results[3]["error"]["fields"], json!(["external_id"]));
    assert_eq!(sim.stored().keys().collect::<Vec<_>>(), ["c1"]);
    assert_eq!(sim.requests()[0].keys, ["c1", "c2", "c3", ""]);
    assert_eq!(sim.requests()[0].outcome, "partial");

    let reply = call(&sim, "POST", "/api/contacts", "[{\"external_id\": \"x\"}]").await;
    assert_eq!(
        reply.body["error"]["code"], "BAD_JSON",
        "the envelope is required"
    );
    let reply = call(&sim, "GET", "/api/contacts", "").await;
    assert_eq!(reply.status, 405);
}

#[tokio::test]
async fn whole_batch_rejection_stores_nothing_until_the_bad_record_is_isolated() {
    let sim = checking_emails(RestMode::WholeBatch).await;
    let good = |k: &str| json!({"id": k, "name": k, "email": format!("{k}@example.com")});
    let bad = json!({"id": "bad", "name": "Bad", "email": "nopain,nogain.com"});
    let (status, body) = post(&sim, &json!([good("a"), bad, good("b"), good("c")])).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "INVALID_EMAIL_ADDRESS");
    assert!(sim.stored().is_empty());

    // What the host's bisection would do: halves, then the bad record alone.
    assert_eq!(post(&sim, &json!([good("a"), bad])).await.0, 400);
    assert_eq!(
        post(&sim, &json!([good("b"), good("c")])).await,
        (200, json!({"accepted": 2}))
    );
    assert_eq!(post(&sim, &json!([good("a")])).await.0, 200);
    assert_eq!(post(&sim, &json!([bad])).await.0, 400);
    assert_eq!(sim.stored().keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    let stats = sim.stats();
    assert_eq!(stats.batch_rejections, 3);
    assert_eq!(stats.record_errors.get("INVALID_EMAIL_ADDRESS"), Some(&3));
    let outcomes: Vec<String> = sim.requests().into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            "batch_rejected",
            "batch_rejected",
            "ok",
            "ok",
            "batch_rejected"
        ]
    );
}

#[tokio::test]
async fn row_locks_per_record_and_per_batch() {
    let faults = Faults::locking(3, 1.0);
    let config = RestConfig {
        mode: RestMode::WholeBatch,
        faults: faults.clone(),
        ..Default::default()
    };
    let sim = start(config).await;
    let (status, body) = post(&sim, &json!([{"id": "a"}])).await;
    assert_eq!(refusal(status, &body), (409, Some("UNABLE_TO_LOCK_ROW")));
    assert_eq!(sim.requests()[0].outcome, "conflict");
    assert!(sim.stored().is_empty());

    let faults = Faults {
        lock_probability: 0.5,
        ..faults
    };
    let sim = start(RestConfig {
        faults,
        ..Default::default()
    })
    .await;
    let records: Vec<Value> = (0..40).map(|i| json!({"id": i})).collect();
    let (_, body) = post(&sim, &Value::Array(records)).await;
    let locked = results(&body)
        .iter()
        .filter(|r| r["error"]["code"] == "UNABLE_TO_LOCK_ROW")
        .count();
    assert!(locked > 5 && locked < 35, "{locked}");
    assert_eq!(sim.stored().len(), 40 - locked);
}
