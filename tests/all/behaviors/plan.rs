//! `sluice plan` says what the next run does, exactly, and changes nothing.

use std::collections::BTreeSet;

use serde_json::json;

use super::run_again;
use crate::common::{Ran, Scenario, accepting, contacts, json_lines, sluice_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_is_what_the_next_run_does() {
    let dest = accepting().await;
    let mut records = contacts(10);
    let setup = Scenario::rest(&dest.base_url())
        .records(records.clone())
        .setup();
    // Through the binary, on a state that does not exist yet: every record is new.
    let config = setup.config_path();
    let text = sluice_ok(&["plan"], &config, &[]).await;
    assert!(
        text.contains("plan for sync `s` (behavior \"upsert\")"),
        "{text}"
    );
    assert!(
        text.contains("insert                          10  e.g. c0000, c0001"),
        "{text}"
    );
    let json = json_lines(&sluice_ok(&["plan", "--json"], &config, &[]).await);
    assert_eq!(
        (&json[0]["insert"], &json[0]["read"]),
        (&json!(10), &json!(10))
    );
    assert!(dest.requests().is_empty(), "a plan sends nothing");
    let ran = Ran::of(setup).await;
    assert_eq!(ran.summary().delivered, 10);

    records[2]["email"] = json!("changed2@example.com");
    records[7]["email"] = json!("changed7@example.com");
    records.extend((10..13).map(|i| json!({"id": format!("c{i:04}"), "email": "new@x.io"})));
    records.push(json!({"email": "no key"}));
    let data: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(ran.setup.dir.path().join("data.jsonl"), &data).unwrap();

    // Planned twice: a plan writes nothing, so both agree.
    let plan = || async {
        let plan = ran
            .host
            .plan(&ran.setup.config, "s", Default::default())
            .await;
        serde_json::to_value(plan.unwrap()).unwrap()
    };
    let (first, second) = (plan().await, plan().await);
    assert_eq!(first, second);
    let plan = &first;
    assert_eq!(
        (
            &plan["insert"],
            &plan["update"],
            &plan["delete"],
            &plan["unchanged"],
            &plan["invalid_rows"]
        ),
        (&json!(3), &json!(2), &json!(0), &json!(8), &json!(1)),
        "{plan}"
    );
    assert_eq!(plan["examples"]["update"], json!(["c0002", "c0007"]));
    assert_eq!(
        plan["examples"]["insert"],
        json!(["c0010", "c0011", "c0012"])
    );

    let before = dest.requests().len();
    let run = run_again(&ran, &records).await;
    let s = &run.summary;
    assert_eq!(
        (s.delivered, s.unchanged, s.invalid_rows),
        (5, 8, 1),
        "the run does what the plan said"
    );
    let sent: BTreeSet<String> = dest.requests()[before..]
        .iter()
        .flat_map(|r| r.keys.clone())
        .collect();
    let planned: BTreeSet<String> = ["insert", "update"]
        .iter()
        .flat_map(|action| plan["examples"][action].as_array().unwrap().clone())
        .map(|key| key.as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, planned);
}
