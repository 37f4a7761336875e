//! The bundled Salesforce connector: every classification path, from recorded responses
//! and end to end against the simulated Salesforce.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde_json::json;
use sluice::sandbox::SourceRecord;
use sluice_sim::faults::Faults;
use sluice_sim::faults::LimitStyle::{RequestLimitExceeded, TooManyRequests};
use sluice_sim::faults::RetryAfterStyle::{HttpDate, Seconds};
use sluice_sim::salesforce::{self, SalesforceConfig};
use sluice_sim::validation::{CustomRule, Rules};
use sluice_sim::{AuthConfig, SimHandle};

use crate::common::{
    self, Expect, Scenario, configured, is_delivered, is_pending, is_permanent, is_rejected,
    response, show,
};

mod contract;
mod delivery;
mod pauses;
mod sessions;

const SETTINGS: &[(&str, &str)] = &[
    ("object", "Account"),
    ("external_id_field", "External_Id__c"),
    ("parent_field", "ParentCrmId"),
];

/// `records` to `dest` as Accounts, in batches of 50 by three workers, with fast retries.
fn accounts_to(dest: &SimHandle, records: Vec<serde_json::Value>) -> Scenario {
    Scenario::new("builtin:salesforce", &dest.base_url())
        .records(records)
        .settings(r#"{ object = "Account", external_id_field = "External_Id__c", parent_field = "ParentCrmId" }"#)
        .batches(50, 3)
        .fast_retries()
}

fn keys(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("k{i}")).collect()
}

fn rules() -> Rules {
    Rules {
        required: vec!["Name".into()],
        emails: vec!["Email".into()],
        max_len: vec![("Name".into(), 40)],
        custom: vec![CustomRule {
            field: "AnnualRevenue".into(),
            forbidden_value: json!(-1),
            message: "Annual revenue cannot be negative".into(),
        }],
        parent_field: Some("ParentCrmId".into()),
        known_parents: Some(BTreeSet::from(["P1".to_string()])),
        ..Rules::default()
    }
}

async fn sim(faults: Faults, auth: Option<AuthConfig>) -> SimHandle {
    salesforce::start(SalesforceConfig {
        faults,
        rules: rules(),
        auth,
        port: 0,
    })
    .await
    .unwrap()
}
