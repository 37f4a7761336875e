//! Sync behaviours (upsert, update, insert, mirror), field mapping, `sluice plan` and
//! idempotency keys: what the destination holds after each run, and what the ledger
//! remembers.

mod idempotency;
mod insert;
mod mapping;
mod mirror;
mod plan;
mod update;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sluice::config::Behavior;
use sluice::engine::RunReport;
use sluice_sim::SimHandle;
use sluice_sim::salesforce::{self, SalesforceConfig};

use crate::common::{self, Ran, Scenario};

/// Rewrites the source of `ran`'s folder with `records`.
fn write_source(ran: &Ran, records: &[Value]) {
    let data: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(ran.setup.dir.path().join("data.jsonl"), data).unwrap();
}

/// [`write_source`], then runs sync `s` again, on the same host.
async fn run_again(ran: &Ran, records: &[Value]) -> RunReport {
    write_source(ran, records);
    common::run_on(&ran.host, &ran.setup).await.0
}

/// [`run_again`] with the sync's behaviour changed first (as an operator edits the
/// config: the destination is the same, so the ledger still counts).
async fn run_as(ran: &mut Ran, behavior: Behavior, records: &[Value]) -> RunReport {
    ran.setup.config.syncs[0].behavior = behavior;
    run_again(ran, records).await
}

/// A simulated Salesforce without faults or rules.
async fn salesforce_sim() -> SimHandle {
    salesforce::start(SalesforceConfig::default())
        .await
        .unwrap()
}

/// Accounts with these keys, each named `name` followed by its key.
fn accounts(keys: &[&str], name: &str) -> Vec<Value> {
    keys.iter()
        .map(|k| json!({"id": k, "Name": format!("{name} {k}")}))
        .collect()
}

/// `records` to `dest` as Accounts, with `behavior`.
fn accounts_to(dest: &SimHandle, records: Vec<Value>, behavior: &str) -> Scenario {
    Scenario::new("builtin:salesforce", &dest.base_url())
        .records(records)
        .settings(r#"{ object = "Account", external_id_field = "External_Id__c" }"#)
        .sync(&format!("behavior = \"{behavior}\""))
        .batches(50, 2)
        .fast_retries()
}

/// Each stored Account's name, by key.
fn names(dest: &SimHandle) -> BTreeMap<String, String> {
    dest.stored()
        .into_iter()
        .map(|(key, record)| (key, record["Name"].as_str().unwrap_or_default().to_string()))
        .collect()
}

/// `(key, name)` pairs as [`names`] gives them.
fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
