use serde_json::{Value, json};
use sluice_sim::SimHandle;
use sluice_sim::couchdb::{self, CouchDbConfig};
use sluice_sim::faults::Faults;
use sluice_sim::validation::Rules;

use crate::support::send;

async fn bulk(sim: &SimHandle, db: &str, docs: &[Value]) -> (u16, Value) {
    let body = json!({ "docs": docs }).to_string();
    let url = format!("{}/{db}/_bulk_docs", sim.base_url());
    let reply = send("POST", &url, &body, None).await;
    (reply.status, reply.body)
}

#[tokio::test]
async fn writes_documents_and_counts_revisions() {
    let sim = couchdb::start(CouchDbConfig::default()).await.unwrap();
    let (status, answers) = bulk(
        &sim,
        "sluice",
        &[json!({"_id": "a", "n": 1}), json!({"_id": "b", "n": 2})],
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        answers,
        json!([
            {"id": "a", "ok": true, "rev": couchdb::revision("a", 1)},
            {"id": "b", "ok": true, "rev": couchdb::revision("b", 1)},
        ])
    );
    // A write replaces the document whole; the revision counts up.
    let (_, answers) = bulk(
        &sim,
        "sluice",
        &[json!({"_id": "a", "_rev": "1-x", "m": 3})],
    )
    .await;
    assert_eq!(answers[0]["rev"], json!(couchdb::revision("a", 2)));
    assert!(answers[0]["rev"].as_str().unwrap().starts_with("2-"));
    assert_eq!(sim.stored_record("a").unwrap(), json!({"_id": "a", "m": 3}));
    assert_eq!(sim.stats().records_stored, 2);
}

#[tokio::test]
async fn validation_forbids_and_row_locks_conflict_per_document() {
    let sim = couchdb::start(CouchDbConfig {
        rules: Rules {
            required: vec!["name".into()],
            ..Rules::default()
        },
        faults: Faults::locking(1, 1.0),
        ..CouchDbConfig::default()
    })
    .await
    .unwrap();
    let (status, answers) = bulk(
        &sim,
        "sluice",
        &[json!({"_id": "a"}), json!({"_id": "b", "name": "B"})],
    )
    .await;
    assert_eq!(status, 201);
    // The lock is checked first, as a concurrent writer would win before validation.
    assert_eq!(answers[0]["error"], "conflict");
    assert_eq!(answers[1]["error"], "conflict");
    assert_eq!(answers[1]["reason"], "Document update conflict.");
    let sim = couchdb::start(CouchDbConfig {
        rules: Rules {
            required: vec!["name".into()],
            ..Rules::default()
        },
        ..CouchDbConfig::default()
    })
    .await
    .unwrap();
    let (_, answers) = bulk(
        &sim,
        "sluice",
        &[
            json!({"_id": "a"}),
            json!({"_id": "b", "name": "B"}),
            json!({"_id": "b", "name": "B2"}),
        ],
    )
    .await;
    assert_eq!(answers[0]["error"], "forbidden");
    assert!(answers[0]["reason"].as_str().unwrap().contains("name"));
    assert_eq!(answers[1]["ok"], true);
    assert_eq!(
        answers[2]["error"], "conflict",
        "the same id twice in one request"
    );
    assert_eq!(sim.stats().records_stored, 1);
}

#[tokio::test]
async fn whole_request_refusals() {
    let sim = couchdb::start(CouchDbConfig {
        max_request_bytes: Some(200),
        ..CouchDbConfig::default()
    })
    .await
    .unwrap();
    let (status, body) = bulk(
        &sim,
        "sluice",
        &[json!({"_id": "a", "notes": "x".repeat(300)})],
    )
    .await;
    assert_eq!((status, body["error"].as_str()), (413, Some("too_large")));
    let (status, body) = bulk(&sim, "sluice", &[json!({"_id": "a", "_secret": 1})]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("doc_validation"))
    );
    let (status, body) = bulk(&sim, "sluice", &[json!({"_id": "_a"})]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("illegal_docid"))
    );
    let (status, body) = bulk(&sim, "sluice", &[json!({"n": 1})]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("illegal_docid"))
    );
    let reply = send(
        "POST",
        &format!("{}/sluice/_bulk_docs", sim.base_url()),
        "nope",
        None,
    )
    .await;
    assert_eq!(
        (reply.status, reply.body["error"].as_str()),
        (400, Some("bad_request"))
    );
    let (status, body) = bulk(&sim, "other", &[json!({"_id": "a"})]).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("not_found")));
    assert_eq!(sim.stats().records_stored, 0);
}
