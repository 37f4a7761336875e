//! The Salesforce simulator's insert, update by Id and delete by ids.

use serde_json::{Value, json};
use sluice_sim::SimHandle;
use sluice_sim::faults::Faults;
use sluice_sim::salesforce::{self, SalesforceConfig, SalesforceOptions};
use sluice_sim::validation::Rules;

use crate::support::call;

const UPSERT: &str = "/services/data/v60.0/composite/sobjects/Account/External_Id__c";
const COLLECTION: &str = "/services/data/v60.0/composite/sobjects";

fn account(fields: Value) -> Value {
    let mut record = json!({"attributes": {"type": "Account"}});
    if let (Some(r), Value::Object(extra)) = (record.as_object_mut(), fields) {
        r.extend(extra);
    }
    record
}

async fn send(sim: &SimHandle, method: &str, path: &str, records: &[Value]) -> Value {
    let body = json!({"allOrNone": false, "records": records}).to_string();
    let reply = call(sim, method, path, &body).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn delete(sim: &SimHandle, ids: &[&str]) -> Value {
    let path = format!("{COLLECTION}?ids={}&allOrNone=false", ids.join(","));
    let reply = call(sim, "DELETE", &path, "").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// The error code of each result, `None` for a success.
fn codes(results: &Value) -> Vec<Option<&str>> {
    let results = results.as_array().expect("an array of results");
    results
        .iter()
        .map(|r| r["errors"][0]["statusCode"].as_str())
        .collect()
}

#[tokio::test]
async fn insert_update_and_delete_by_stable_ids() {
    let rules = Rules {
        emails: vec!["Email__c".into()],
        ..Default::default()
    };
    let sim = salesforce::start(SalesforceConfig {
        rules,
        ..Default::default()
    })
    .await
    .unwrap();
    let inserted = send(
        &sim,
        "POST",
        COLLECTION,
        &[
            account(json!({"External_Id__c": "A-1", "Name": "Acme", "Phone": "555"})),
            account(json!({"External_Id__c": "A-2", "Email__c": "not an email"})),
            account(json!({"Name": "no key"})),
        ],
    )
    .await;
    assert_eq!(
        codes(&inserted),
        [
            None,
            Some("INVALID_EMAIL_ADDRESS"),
            Some("REQUIRED_FIELD_MISSING")
        ]
    );
    let id = salesforce::record_id("Account", "A-1");
    assert_eq!(
        inserted[0],
        json!({"id": id, "success": true, "errors": []})
    );
    assert_eq!(sim.destination_id("A-1").as_deref(), Some(id.as_str()));

    // An upsert of the same key finds the inserted record, and gives the same id.
    let upserted = send(
        &sim,
        "PATCH",
        UPSERT,
        &[account(json!({"External_Id__c": "A-1"}))],
    )
    .await;
    assert_eq!(
        (upserted[0]["id"].as_str(), upserted[0]["created"].as_bool()),
        (Some(id.as_str()), Some(false))
    );
    let again = send(
        &sim,
        "POST",
        COLLECTION,
        &[account(json!({"External_Id__c": "A-1"}))],
    )
    .await;
    assert_eq!(codes(&again), [Some("DUPLICATE_VALUE")]);

    let updated = send(
        &sim,
        "PATCH",
        COLLECTION,
        &[
            account(json!({"Id": id, "Name": "Acme Corp"})),
            account(json!({"Id": "001000000000000AAA", "Name": "Gone"})),
            account(json!({"Name": "No Id"})),
        ],
    )
    .await;
    assert_eq!(
        codes(&updated),
        [None, Some("ENTITY_IS_DELETED"), Some("MISSING_ARGUMENT")]
    );
    assert_eq!(updated[0], json!({"id": id, "success": true, "errors": []}));
    assert_eq!(
        sim.stored_record("A-1").unwrap(),
        json!({"External_Id__c": "A-1", "Name": "Acme Corp", "Phone": "555"}),
        "an update merges, and the Id is not a field"
    );
    assert_eq!(sim.requests()[3].keys, ["A-1", "001000000000000AAA", ""]);

    let deleted = delete(&sim, &[&id, "001000000000000AAA"]).await;
    assert_eq!(codes(&deleted), [None, Some("ENTITY_IS_DELETED")]);
    assert_eq!(deleted[0], json!({"id": id, "success": true, "errors": []}));
    assert_eq!(deleted[1]["id"], "001000000000000AAA");
    assert!(sim.stored().is_empty());
    assert_eq!(
        codes(&delete(&sim, &[&id]).await),
        [Some("ENTITY_IS_DELETED")]
    );
    let last = sim.requests().pop().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str(), last.keys),
        ("DELETE", COLLECTION, vec![id.clone()])
    );
    assert_eq!(last.query, Some(format!("ids={id}&allOrNone=false")));

    let stats = sim.stats();
    let by_operation: Vec<(&str, u64)> = stats
        .by_operation
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        by_operation,
        [("delete", 2), ("insert", 2), ("update", 1), ("upsert", 1)]
    );
    assert_eq!((stats.records_deleted, stats.records_stored), (1, 0));
    let methods = sim.requests_by_method();
    assert_eq!(
        (methods["POST"], methods["PATCH"], methods["DELETE"]),
        (2, 2, 2)
    );
}

#[tokio::test]
async fn deletes_meet_faults_and_refuse_bad_queries() {
    let sim = salesforce::start_with(
        SalesforceConfig {
            faults: Faults::locking(5, 0.6),
            ..Default::default()
        },
        SalesforceOptions {
            external_id_field: "Key__c".into(),
        },
    )
    .await
    .unwrap();
    // Rows lock on inserts and deletes alike, and clear on retry.
    let mut tries = 0;
    while codes(&send(&sim, "POST", COLLECTION, &[account(json!({"Key__c": "k"}))]).await) != [None]
    {
        tries += 1;
        assert!(tries < 30, "the lock never cleared");
    }
    let id = sim.destination_id("k").unwrap();
    let mut tries = 0;
    while codes(&delete(&sim, &[&id]).await) != [None] {
        tries += 1;
        assert!(tries < 30, "the lock never cleared");
    }
    assert!(sim.stored().is_empty());
    let locks = sim.stats().record_errors["UNABLE_TO_LOCK_ROW"];
    assert_eq!(
        locks as usize,
        sim.requests().len() - 2,
        "every failed try was a lock"
    );

    for query in ["", "?allOrNone=false", "?ids=&allOrNone=false"] {
        let reply = call(&sim, "DELETE", &format!("{COLLECTION}{query}"), "").await;
        assert_eq!(
            (reply.status, reply.body[0]["errorCode"].as_str()),
            (400, Some("MISSING_ARGUMENT")),
            "{query}"
        );
    }
    let many: Vec<String> = (0..201).map(|i| format!("001{i:015}")).collect();
    let reply = call(
        &sim,
        "DELETE",
        &format!("{COLLECTION}?ids={}", many.join(",")),
        "",
    )
    .await;
    assert_eq!(
        (reply.status, reply.body[0]["errorCode"].as_str()),
        (400, Some("EXCEEDED_ID_LIMIT"))
    );
    assert_eq!(call(&sim, "GET", COLLECTION, "").await.status, 405);
}

#[tokio::test]
async fn all_or_none_deletes_nothing_when_one_fails() {
    let sim = salesforce::start(SalesforceConfig::default())
        .await
        .unwrap();
    send(
        &sim,
        "PATCH",
        UPSERT,
        &[account(json!({"External_Id__c": "a"}))],
    )
    .await;
    let id = sim.destination_id("a").unwrap();
    let path = format!("{COLLECTION}?ids={id},001000000000000AAA&allOrNone=true");
    let reply = call(&sim, "DELETE", &path, "").await;
    assert_eq!(
        codes(&reply.body),
        [
            Some("ALL_OR_NONE_OPERATION_ROLLED_BACK"),
            Some("ENTITY_IS_DELETED")
        ]
    );
    assert_eq!(sim.stored().len(), 1);
}
