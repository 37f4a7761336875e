use serde_json::{Value, json};
use sluice_sim::SimHandle;
use sluice_sim::couchdb::{self, CouchDbConfig};
use sluice_sim::faults::Faults;
use sluice_sim::validation::Rules;

use crate::support::call;

/// The simulated CouchDB, serving database `sluice`.
async fn start(config: CouchDbConfig) -> SimHandle {
    couchdb::start(config).await.unwrap()
}

/// The simulated CouchDB, whose validation function requires a `name`, with `faults`.
async fn requiring_a_name(faults: Faults) -> SimHandle {
    let rules = Rules {
        required: vec!["name".into()],
        ..Rules::default()
    };
    start(CouchDbConfig {
        rules,
        faults,
        ..CouchDbConfig::default()
    })
    .await
}

/// Posts `docs` to `_bulk_docs` of database `db`: the status and the answer.
async fn bulk_to(sim: &SimHandle, db: &str, docs: &[Value]) -> (u16, Value) {
    let body = json!({ "docs": docs }).to_string();
    let reply = call(sim, "POST", &format!("/{db}/_bulk_docs"), &body).await;
    (reply.status, reply.body)
}

/// [`bulk_to`] the database the simulator serves.
async fn bulk(sim: &SimHandle, docs: &[Value]) -> (u16, Value) {
    bulk_to(sim, "sluice", docs).await
}

#[tokio::test]
async fn writes_documents_and_counts_revisions() {
    let sim = start(CouchDbConfig::default()).await;
    let docs = [json!({"_id": "a", "n": 1}), json!({"_id": "b", "n": 2})];
    let (status, answers) = bulk(&sim, &docs).await;
    assert_eq!(status, 201);
    assert_eq!(
        answers,
        json!([
            {"id": "a", "ok": true, "rev": couchdb::revision("a", 1)},
            {"id": "b", "ok": true, "rev": couchdb::revision("b", 1)},
        ])
    );
    // A write replaces the document whole; the revision counts up.
    let (_, answers) = bulk(&sim, &[json!({"_id": "a", "_rev": "1-x", "m": 3})]).await;
    assert_eq!(answers[0]["rev"], json!(couchdb::revision("a", 2)));
    assert!(answers[0]["rev"].as_str().unwrap().starts_with("2-"));
    assert_eq!(sim.stored_record("a").unwrap(), json!({"_id": "a", "m": 3}));
    assert_eq!(sim.stats().records_stored, 2);
}

#[tokio::test]
async fn row_locks_conflict_per_document_before_validation() {
    let sim = requiring_a_name(Faults::locking(1, 1.0)).await;
    let (status, answers) = bulk(
        &sim,
        &[json!({"_id": "a"}), json!({"_id": "b", "name": "B"})],
    )
    .await;
    assert_eq!(status, 201);
    // The lock is checked first, as a concurrent writer would win before validation.
    assert_eq!(answers[0]["error"], "conflict");
    assert_eq!(answers[1]["error"], "conflict");
    assert_eq!(answers[1]["reason"], "Document update conflict.");
}

#[tokio::test]
async fn validation_forbids_per_document_and_an_id_twice_conflicts() {
    let sim = requiring_a_name(Faults::default()).await;
    let docs = [
        json!({"_id": "a"}),
        json!({"_id": "b", "name": "B"}),
        json!({"_id": "b", "name": "B2"}),
    ];
    let (_, answers) = bulk(&sim, &docs).await;
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
    let sim = start(CouchDbConfig {
        max_request_bytes: Some(200),
        ..CouchDbConfig::default()
    })
    .await;
    let doc_cases = [
        (
            "sluice",
            json!({"_id": "a", "notes": "x".repeat(300)}),
            413,
            "too_large",
        ),
        (
            "sluice",
            json!({"_id": "a", "_secret": 1}),
            400,
            "doc_validation",
        ),
        ("sluice", json!({"_id": "_a"}), 400, "illegal_docid"),
        ("sluice", json!({"n": 1}), 400, "illegal_docid"),
        ("other", json!({"_id": "a"}), 404, "not_found"),
    ];
    for (db, doc, status, error) in doc_cases {
        let (got, body) = bulk_to(&sim, db, std::slice::from_ref(&doc)).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(error)),
            "{doc}"
        );
    }
    let reply = call(&sim, "POST", "/sluice/_bulk_docs", "nope").await;
    assert_eq!(
        (reply.status, reply.body["error"].as_str()),
        (400, Some("bad_request"))
    );
    assert_eq!(sim.stats().records_stored, 0);
}
