use std::collections::BTreeSet;

use serde_json::{Value, json};
use sluice_sim::SimHandle;
use sluice_sim::faults::Faults;
use sluice_sim::salesforce::{self, SalesforceConfig};
use sluice_sim::validation::{CustomRule, Rules};

use crate::support::call;

const PATH: &str = "/services/data/v60.0/composite/sobjects/Account/External_Id__c";

fn account(key: &str, fields: Value) -> Value {
    let mut record = json!({"attributes": {"type": "Account"}, "External_Id__c": key});
    if let (Some(r), Value::Object(extra)) = (record.as_object_mut(), fields) {
        r.extend(extra);
    }
    record
}

async fn start(config: SalesforceConfig) -> SimHandle {
    salesforce::start(config).await.unwrap()
}

/// The simulator checking records with `rules`.
async fn checking(rules: Rules) -> SimHandle {
    start(SalesforceConfig {
        rules,
        ..Default::default()
    })
    .await
}

async fn upsert(sim: &SimHandle, records: &[Value]) -> (u16, Value) {
    let body = json!({"allOrNone": false, "records": records}).to_string();
    let reply = call(sim, "PATCH", PATH, &body).await;
    (reply.status, reply.body)
}

/// The error code of each result, `None` for a success.
fn codes(results: &Value) -> Vec<Option<String>> {
    results
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["errors"][0]["statusCode"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn stores_by_key_and_upserts_by_merging() {
    let sim = start(SalesforceConfig::default()).await;
    let (status, results) = upsert(
        &sim,
        &[
            account("A-1", json!({"Name": "Acme", "Phone": "555"})),
            account("A-2", json!({"Name": "Globex"})),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(results[0]["success"], true);
    assert_eq!(results[0]["created"], true);
    assert_eq!(results[0]["errors"], json!([]));
    let id = results[0]["id"].as_str().unwrap();
    assert_eq!(id, salesforce::record_id("Account", "A-1"));
    assert!(id.len() == 18 && id.starts_with("001"));

    let (status, results) = upsert(&sim, &[account("A-1", json!({"Name": "Acme Corp"}))]).await;
    assert_eq!(status, 200);
    assert_eq!(results[0]["created"], false);
    assert_eq!(results[0]["id"], id, "the id is stable for a key");

    let stored = sim.stored();
    assert_eq!(stored.len(), 2);
    assert_eq!(
        stored["A-1"],
        json!({"External_Id__c": "A-1", "Name": "Acme Corp", "Phone": "555"})
    );
    assert_eq!(stored["A-2"]["Name"], "Globex");

    let stats = sim.stats();
    assert_eq!(
        (stats.requests, stats.records_received, stats.records_stored),
        (2, 3, 2)
    );
    assert_eq!(stats.by_status.get(&200), Some(&2));
    let requests = sim.requests();
    assert_eq!(requests[0].keys, ["A-1", "A-2"]);
    assert_eq!(requests[1].keys, ["A-1"]);
    assert_eq!(
        (
            requests[1].seq,
            requests[1].method.as_str(),
            requests[1].path.as_str()
        ),
        (1, "PATCH", PATH)
    );
    assert_eq!(requests[1].outcome, "ok");
    assert!(requests[0].arrived <= requests[1].arrived);
}

#[tokio::test]
async fn every_validation_code_per_record() {
    let rules = Rules {
        required: vec!["Name".into()],
        emails: vec!["Email__c".into()],
        max_len: vec![("Name".into(), 10)],
        custom: vec![CustomRule {
            field: "Stage__c".into(),
            forbidden_value: json!("Frozen"),
            message: "Frozen accounts cannot be synced".into(),
        }],
        unique: vec!["Email__c".into()],
        parent_field: Some("Parent_Ext__c".into()),
        known_parents: Some(BTreeSet::from(["P-1".to_owned()])),
    };
    let sim = checking(rules).await;
    let records = [
        account(
            "ok",
            json!({"Name": "Fine", "Email__c": "a@b.com", "Parent_Ext__c": "P-1"}),
        ),
        account("no-name", json!({"Email__c": "c@d.com"})),
        account(
            "bad-email",
            json!({"Name": "X", "Email__c": "nopain,nogain.com"}),
        ),
        account("long", json!({"Name": "A name far too long"})),
        account("frozen", json!({"Name": "X", "Stage__c": "Frozen"})),
        account("orphan", json!({"Name": "X", "Parent_Ext__c": "P-404"})),
        account("dup", json!({"Name": "X", "Email__c": "a@b.com"})),
        json!({"attributes": {"type": "Account"}, "Name": "No key"}),
        account("ok", json!({"Name": "Twice"})),
    ];
    let (status, results) = upsert(&sim, &records).await;
    assert_eq!(status, 200, "a partly failed batch is still a 200");
    let expected = [
        None,
        Some("REQUIRED_FIELD_MISSING"),
        Some("INVALID_EMAIL_ADDRESS"),
        Some("STRING_TOO_LONG"),
        Some("FIELD_CUSTOM_VALIDATION_EXCEPTION"),
        Some("INVALID_CROSS_REFERENCE_KEY"),
        Some("DUPLICATE_VALUE"),
        Some("REQUIRED_FIELD_MISSING"),
        Some("DUPLICATE_EXTERNAL_ID"),
    ];
    let expected: Vec<Option<String>> = expected.iter().map(|c| c.map(str::to_owned)).collect();
    assert_eq!(codes(&results), expected);
    assert_eq!(results[1]["id"], Value::Null);
    assert_eq!(results[1]["success"], false);
    assert_eq!(results[1]["errors"][0]["fields"], json!(["Name"]));
    assert_eq!(
        results[4]["errors"][0]["message"],
        "Frozen accounts cannot be synced"
    );
    assert_eq!(results[7]["errors"][0]["fields"], json!(["External_Id__c"]));

    assert_eq!(sim.stored().keys().collect::<Vec<_>>(), ["ok"]);
    let stats = sim.stats();
    assert_eq!(stats.record_errors.get("REQUIRED_FIELD_MISSING"), Some(&2));
    assert_eq!(stats.record_errors.values().sum::<u64>(), 8);
    assert_eq!(sim.requests()[0].outcome, "partial");
    assert_eq!(sim.requests()[0].keys[7], "");

    // A fixed record goes through on the next run, and its old email frees up.
    let (_, results) = upsert(&sim, &[account("ok", json!({"Email__c": "new@b.com"}))]).await;
    assert_eq!(codes(&results), [None]);
    let (_, results) = upsert(
        &sim,
        &[account("dup", json!({"Name": "X", "Email__c": "a@b.com"}))],
    )
    .await;
    assert_eq!(codes(&results), [None]);
}

#[tokio::test]
async fn all_or_none_stores_nothing_when_one_fails() {
    let rules = Rules {
        required: vec!["Name".into()],
        ..Default::default()
    };
    let sim = checking(rules).await;
    let body = json!({"allOrNone": true, "records": [account("a", json!({"Name": "A"})), account("b", json!({}))]});
    let reply = call(&sim, "PATCH", PATH, &body.to_string()).await;
    assert_eq!(reply.status, 200);
    let expected = [
        Some("ALL_OR_NONE_OPERATION_ROLLED_BACK".to_owned()),
        Some("REQUIRED_FIELD_MISSING".to_owned()),
    ];
    assert_eq!(codes(&reply.body), expected);
    assert!(sim.stored().is_empty());
}

#[tokio::test]
async fn malformed_bodies_and_oversized_batches_are_refused_whole() {
    let sim = start(SalesforceConfig::default()).await;
    let reply = call(&sim, "PATCH", PATH, "{\"records\": [").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body[0]["errorCode"], "JSON_PARSER_ERROR");
    let reply = call(&sim, "PATCH", PATH, "{\"records\": [1, 2]}").await;
    assert_eq!(
        (reply.status, reply.body[0]["errorCode"].as_str()),
        (400, Some("JSON_PARSER_ERROR"))
    );

    let records: Vec<Value> = (0..201)
        .map(|i| account(&format!("k{i}"), json!({})))
        .collect();
    let (status, body) = upsert(&sim, &records).await;
    assert_eq!(
        (status, body[0]["errorCode"].as_str()),
        (400, Some("EXCEEDED_ID_LIMIT"))
    );
    let (status, _) = upsert(&sim, &records[..200]).await;
    assert_eq!(status, 200);
    assert_eq!(sim.stored().len(), 200);

    let reply = call(&sim, "POST", PATH, "{}").await;
    assert_eq!(reply.status, 405);
    let reply = call(&sim, "GET", "/services/data/v60.0/sobjects", "").await;
    assert_eq!(reply.status, 404);
    let outcomes: Vec<String> = sim.requests().into_iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            "bad_request",
            "bad_request",
            "batch_rejected",
            "ok",
            "method_not_allowed",
            "not_found"
        ]
    );
    let stats = sim.stats();
    assert_eq!((stats.requests, stats.batch_rejections), (6, 1));
}

async fn locked_sim(seed: u64) -> SimHandle {
    let faults = Faults {
        seed,
        lock_probability: 0.4,
        ..Default::default()
    };
    start(SalesforceConfig {
        faults,
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn row_locks_are_seeded_independent_of_batching_and_clear_on_retry() {
    let keys: Vec<String> = (0..60).map(|i| format!("K-{i}")).collect();
    let records: Vec<Value> = keys
        .iter()
        .map(|k| account(k, json!({"Name": k})))
        .collect();

    // The same seed locks the same rows, whether they come in one batch or one by one in
    // reverse order.
    let (one, two, other) = (
        locked_sim(11).await,
        locked_sim(11).await,
        locked_sim(12).await,
    );
    let (_, batch_results) = upsert(&one, &records).await;
    let mut single = vec![None; records.len()];
    for (i, record) in records.iter().enumerate().rev() {
        let (_, r) = upsert(&two, std::slice::from_ref(record)).await;
        single[i] = codes(&r).pop().flatten();
    }
    let first = codes(&batch_results);
    assert_eq!(first, single);
    let locked = first.iter().flatten().count();
    assert!(
        locked > 5 && locked < 45,
        "{locked} of 60 locked at p = 0.4"
    );
    assert!(first.iter().flatten().all(|c| c == "UNABLE_TO_LOCK_ROW"));
    assert_eq!(
        batch_results[first.iter().position(Option::is_some).unwrap()]["errors"][0]["message"],
        "unable to obtain exclusive access to this record"
    );
    let (_, other_results) = upsert(&other, &records).await;
    assert_ne!(
        codes(&other_results),
        first,
        "another seed locks other rows"
    );

    // Sending the locked records again eventually gets every one through.
    let mut pending: Vec<Value> = records.clone();
    let mut rounds = 0;
    while !pending.is_empty() {
        rounds += 1;
        assert!(rounds <= 30, "row locks never cleared");
        let (_, results) = upsert(&one, &pending).await;
        let outcome = codes(&results);
        pending = pending
            .into_iter()
            .zip(outcome)
            .filter(|(_, c)| c.is_some())
            .map(|(r, _)| r)
            .collect();
    }
    assert_eq!(one.stored().len(), 60);
    assert!(one.stats().record_errors["UNABLE_TO_LOCK_ROW"] >= locked as u64);
}
