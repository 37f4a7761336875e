use std::collections::BTreeSet;

use serde_json::{Value, json};
use sluice_sim::SimHandle;
use sluice_sim::faults::Faults;
use sluice_sim::hubspot::{self, HubSpotConfig};
use sluice_sim::validation::Rules;

use crate::support::{call, results};

const PATH: &str = "/crm/v3/objects/contacts/batch/upsert";

fn input(email: &str, properties: Value) -> Value {
    json!({"idProperty": "email", "id": email, "properties": properties})
}

async fn start(config: HubSpotConfig) -> SimHandle {
    hubspot::start(config).await.unwrap()
}

async fn upsert(sim: &SimHandle, inputs: &[Value]) -> (u16, Value) {
    let body = json!({ "inputs": inputs }).to_string();
    let reply = call(sim, "POST", PATH, &body).await;
    (reply.status, reply.body)
}

/// Two inputs: `a@example.com` with a last name, and `b@example.com` with `b`.
fn a_and(b: Value) -> [Value; 2] {
    [
        input("a@example.com", json!({"lastname": "A"})),
        input("b@example.com", b),
    ]
}

fn emails_of(body: &Value) -> Vec<String> {
    results(body)
        .iter()
        .map(|r| r["properties"]["email"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn stores_by_id_and_answers_out_of_order() {
    let sim = start(HubSpotConfig::default()).await;
    let inputs: Vec<Value> = (0..20)
        .map(|i| {
            input(
                &format!("c{i}@example.com"),
                json!({"firstname": format!("F{i}")}),
            )
        })
        .collect();
    let (status, body) = upsert(&sim, &inputs).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("COMPLETE")));
    let emails = emails_of(&body);
    let sent: Vec<String> = (0..20).map(|i| format!("c{i}@example.com")).collect();
    assert_ne!(emails, sent, "results are not in input order");
    let (a, b): (BTreeSet<_>, BTreeSet<_>) = (emails.iter().collect(), sent.iter().collect());
    assert_eq!(a, b);
    let first = results(&body)
        .iter()
        .find(|r| r["properties"]["email"] == "c0@example.com")
        .unwrap();
    assert_eq!(
        first["id"],
        json!(hubspot::record_id("contacts", "c0@example.com"))
    );
    assert_eq!(first["new"], true);
    // An upsert merges properties into the stored record.
    let (status, body) = upsert(&sim, &[input("c0@example.com", json!({"lastname": "L"}))]).await;
    assert_eq!(
        (status, body["results"][0]["new"].as_bool()),
        (200, Some(false))
    );
    let stored = sim.stored_record("c0@example.com").unwrap();
    assert_eq!(
        (stored["firstname"].as_str(), stored["lastname"].as_str()),
        (Some("F0"), Some("L"))
    );
    assert_eq!(sim.stats().records_stored, 20);
}

#[tokio::test]
async fn refused_records_are_named_by_id_in_grouped_errors() {
    let rules = Rules {
        required: vec!["lastname".into()],
        emails: vec!["email".into()],
        ..Rules::default()
    };
    let sim = start(HubSpotConfig {
        rules,
        ..HubSpotConfig::default()
    })
    .await;
    let [a, b] = a_and(json!({}));
    let c = input("c@example.com", json!({}));
    let d = input("not-an-email", json!({"lastname": "D"}));
    let (status, body) = upsert(&sim, &[a, b, c, d]).await;
    assert_eq!(status, 207);
    assert_eq!(emails_of(&body), ["a@example.com"]);
    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let missing = errors
        .iter()
        .find(|e| e["subCategory"] == "REQUIRED_FIELD_MISSING")
        .unwrap();
    assert_eq!(missing["category"], "VALIDATION_ERROR");
    assert_eq!(
        missing["context"]["ids"],
        json!(["b@example.com", "c@example.com"])
    );
    assert_eq!(missing["context"]["propertyName"], json!(["lastname"]));
    let email = errors
        .iter()
        .find(|e| e["subCategory"] == "INVALID_EMAIL_ADDRESS")
        .unwrap();
    assert_eq!(email["context"]["ids"], json!(["not-an-email"]));
    assert_eq!(sim.stats().records_stored, 1);
}

#[tokio::test]
async fn whole_batch_refusals_store_nothing() {
    let sim = start(HubSpotConfig {
        known_properties: Some(["email", "lastname"].map(String::from).into()),
        max_inputs: 2,
        ..HubSpotConfig::default()
    })
    .await;
    let (status, body) = upsert(&sim, &a_and(json!({"color": "teal"}))).await;
    assert_eq!(
        (status, body["category"].as_str()),
        (400, Some("VALIDATION_ERROR"))
    );
    assert_eq!(body["errors"][0]["code"], "PROPERTY_DOESNT_EXIST");
    assert_eq!(
        body["errors"][0]["context"]["propertyName"],
        json!(["color"])
    );
    let three: Vec<Value> = (0..3)
        .map(|i| input(&format!("{i}@example.com"), json!({})))
        .collect();
    let (status, body) = upsert(&sim, &three).await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("too large"),
        "{body}"
    );
    let (status, _) = upsert(
        &sim,
        &[
            json!({"idProperty": "email", "id": "a@example.com"}),
            json!({"idProperty": "domain", "id": "x"}),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(sim.stats().records_stored, 0);
    assert_eq!(sim.stats().batch_rejections, 3);
}

#[tokio::test]
async fn the_daily_limit_refuses_everything_after_it() {
    let sim = start(HubSpotConfig {
        daily_limit: Some(1),
        faults: Faults::default(),
        ..HubSpotConfig::default()
    })
    .await;
    let (status, _) = upsert(&sim, &[input("a@example.com", json!({}))]).await;
    assert_eq!(status, 200);
    for _ in 0..2 {
        let body = json!({"inputs": [input("b@example.com", json!({}))]}).to_string();
        let reply = call(&sim, "POST", PATH, &body).await;
        assert_eq!(reply.status, 429);
        assert_eq!(reply.body["policyName"], "DAILY");
        assert_eq!(reply.header("retry-after"), None);
    }
    assert_eq!(sim.stats().rate_limited, 2);
    assert_eq!(sim.stats().records_stored, 1);
}
