//! The REST simulator's delete endpoint and idempotency keys.

use serde_json::{Value, json};
use sluice_sim::SimHandle;
use sluice_sim::rest::{self, RestConfig, RestMode};

use crate::support::{call, call_with, results};

async fn start(config: RestConfig) -> SimHandle {
    rest::start(config).await.unwrap()
}

fn with_deletes(path: &str, method: &str) -> RestConfig {
    RestConfig {
        delete_path: Some(path.into()),
        delete_method: method.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn deletes_by_key_or_given_id_per_record() {
    let sim = start(with_deletes("/v1/records/delete", "POST")).await;
    let reply = call(
        &sim,
        "POST",
        "/v1/records",
        &json!([{"id": "a"}, {"id": "b"}, {"id": "c"}]).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(sim.destination_id("b"), Some(rest::record_id("b")));

    let ids = json!(["a", rest::record_id("b"), "nope"]).to_string();
    let reply = call(&sim, "POST", "/v1/records/delete", &ids).await;
    assert_eq!(reply.status, 200);
    let r = results(&reply.body);
    assert_eq!(r[0], json!({"id": "a", "error": null}));
    assert_eq!(r[1]["error"], Value::Null);
    assert_eq!(r[2]["id"], "nope");
    assert_eq!(r[2]["error"]["code"], "NOT_FOUND");
    assert_eq!(sim.stored().keys().collect::<Vec<_>>(), ["c"]);
    let last = sim.requests().pop().unwrap();
    assert_eq!(
        (last.keys, last.outcome.as_str()),
        (vec!["a".to_string(), "b".into(), "nope".into()], "partial")
    );
    let stats = sim.stats();
    assert_eq!((stats.records_deleted, stats.records_stored), (2, 1));
    assert_eq!(stats.by_operation.get("delete"), Some(&1));
    assert_eq!(stats.by_operation.get("upsert"), Some(&1));

    let reply = call(&sim, "POST", "/v1/records/delete", "[1]").await;
    assert_eq!(
        (reply.status, reply.body["error"]["code"].as_str()),
        (400, Some("BAD_JSON"))
    );
    assert_eq!(
        call(&sim, "DELETE", "/v1/records/delete", "[]")
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn deletes_can_share_the_records_path_in_an_envelope() {
    let config = RestConfig {
        records_field: Some("items".into()),
        mode: RestMode::WholeBatch,
        ..with_deletes("/v1/records", "delete")
    };
    let sim = start(config).await;
    let body = json!({"items": [{"id": "a"}, {"id": "b"}]}).to_string();
    assert_eq!(call(&sim, "PUT", "/v1/records", &body).await.status, 200);
    let reply = call(
        &sim,
        "DELETE",
        "/v1/records",
        &json!({"items": ["a", "x"]}).to_string(),
    )
    .await;
    assert_eq!(
        (reply.status, reply.body.clone()),
        (200, json!({"accepted": 2}))
    );
    assert_eq!(sim.stored().keys().collect::<Vec<_>>(), ["b"]);

    let clash = RestConfig {
        ..with_deletes("/v1/records", "POST")
    };
    assert!(rest::start(clash).await.is_err());
    assert!(rest::start(with_deletes("/d", "GET")).await.is_err());
}

#[tokio::test]
async fn a_seen_idempotency_key_replays_its_answer_without_applying_it() {
    let config = RestConfig {
        idempotency_header: Some("X-Request-Key".into()),
        ..with_deletes("/v1/records/delete", "POST")
    };
    let sim = start(config).await;
    let key = |k| [("x-request-key", k)];
    let body = json!([{"id": "a", "n": 1}]).to_string();
    let first = call_with(&sim, "POST", "/v1/records", &body, &key("k1")).await;
    assert_eq!(first.status, 200);
    // Changed behind the key's back: a replay must not store the old record again.
    let other = json!([{"id": "a", "n": 2}]).to_string();
    call_with(&sim, "POST", "/v1/records", &other, &key("k2")).await;
    let replay = call_with(&sim, "POST", "/v1/records", &body, &key("k1")).await;
    assert_eq!((replay.status, &replay.body), (200, &first.body));
    assert_eq!(sim.stored_record("a").unwrap()["n"], 2);

    let reused = call_with(&sim, "POST", "/v1/records", &other, &key("k1")).await;
    assert_eq!(
        (reused.status, reused.body["error"]["code"].as_str()),
        (400, Some("IDEMPOTENCY_KEY_REUSED"))
    );
    let ids = json!(["a"]).to_string();
    let deleted = call_with(&sim, "POST", "/v1/records/delete", &ids, &key("k3")).await;
    let again = call_with(&sim, "POST", "/v1/records/delete", &ids, &key("k3")).await;
    assert_eq!(
        again.body, deleted.body,
        "the second delete is not told NOT_FOUND"
    );
    assert_eq!(results(&again.body)[0]["error"], Value::Null);
    call(&sim, "POST", "/v1/records", &body).await;

    let keys: Vec<Option<String>> = sim.idempotency_keys();
    let expected = [
        Some("k1"),
        Some("k2"),
        Some("k1"),
        Some("k1"),
        Some("k3"),
        Some("k3"),
        None,
    ];
    assert_eq!(keys, expected.map(|k| k.map(str::to_owned)));
    let outcomes: Vec<String> = sim.requests().into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            "ok",
            "ok",
            "replayed",
            "bad_request",
            "ok",
            "replayed",
            "ok"
        ]
    );
    let stats = sim.stats();
    assert_eq!((stats.replays, stats.records_deleted), (2, 1));
}

#[tokio::test]
async fn a_key_refused_before_it_ran_runs_when_sent_again() {
    let config = RestConfig {
        // The second data request of every two fails.
        faults: sluice_sim::Faults::error_burst(1, 1, 503),
        ..Default::default()
    };
    let sim = start(config).await;
    let body = json!([{"id": "a"}]).to_string();
    let key = [("Idempotency-Key", "k")];
    assert_eq!(call(&sim, "POST", "/v1/records", "[]").await.status, 200);
    let refused = call_with(&sim, "POST", "/v1/records", &body, &key).await;
    assert_eq!(refused.status, 503);
    let ran = call_with(&sim, "POST", "/v1/records", &body, &key).await;
    assert_eq!(ran.status, 200);
    assert_eq!(sim.stored().len(), 1);
    assert_eq!(sim.stats().replays, 0);
}
