//! The versioning promise: connectors built against the frozen 0.1.0 keep running beside
//! 0.2.0 ones, in one config and one run; and a 0.1.0 connector, which can only upsert,
//! is refused for any other behaviour before anything is read.

use super::*;
use crate::common::{json_lines, rest_sim, sluice};
use sluice_sim::rest::RestMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_connector_asked_to_mirror_is_refused_naming_what_it_lacks() {
    let dest = couch_sim(|_| {}).await;
    let setup = to_couch(&dest)
        .records(documents(3))
        .sync("behavior = \"mirror\"")
        .setup();
    let host = sluice::sync::Host::new(&setup.config).unwrap();
    let Err(err) = host
        .run(&setup.config, "s", sluice::engine::RunControl::default())
        .await
    else {
        panic!("the run started");
    };
    let err = format!("{err:#}");
    assert!(
        err.contains("behavior = \"mirror\" needs the operation(s) delete")
            && err.contains(
                "connector `c` supports only upsert, as every connector built against \
                 sluice:connector@0.1.0 does"
            ),
        "{err}"
    );
    assert!(dest.requests().is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_and_a_0_2_connector_run_side_by_side() {
    let couch = couch_sim(|_| {}).await;
    let rest = rest_sim(RestMode::PerRecord, Faults::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let docs: String = documents(20).iter().map(|d| format!("{d}\n")).collect();
    std::fs::write(dir.path().join("docs.jsonl"), docs).unwrap();
    let contacts: String = common::contacts(30)
        .iter()
        .map(|c| format!("{c}\n"))
        .collect();
    std::fs::write(dir.path().join("contacts.jsonl"), contacts).unwrap();
    let config = format!(
        r#"state_dir = "state"
cache_dir = "{cache}"

[connectors.couch]
component = "{couch_component}"
allowed_hosts = ["{couch_host}"]

[connectors.rest]
component = "builtin:rest"
allowed_hosts = ["{rest_host}"]

[[sync]]
name = "docs"
connector = "couch"
source = {{ jsonl = "docs.jsonl", key = "id" }}
base_url = "{couch_url}"
settings = {{ db = "crm" }}

[[sync]]
name = "contacts"
connector = "rest"
source = {{ jsonl = "contacts.jsonl", key = "id" }}
base_url = "{rest_url}"
behavior = "mirror"
settings = {{ path = "/v1/records", results_pointer = "/results", delete_path = "/v1/records/delete" }}
"#,
        cache = common::cache_dir().display(),
        couch_component = component("js-couchdb").display(),
        couch_host = couch.addr(),
        rest_host = rest.addr(),
        couch_url = couch.base_url(),
        rest_url = rest.base_url(),
    );
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, config).unwrap();
    let output = sluice(&["run", "--json"], &path, &[]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summaries = json_lines(&stdout);
    let delivered: Vec<(&str, u64)> = summaries
        .iter()
        .map(|s| {
            (
                s["sync"].as_str().unwrap(),
                s["delivered"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(delivered, [("docs", 20), ("contacts", 30)]);
    assert_eq!(couch.stored().len(), 20);
    assert_eq!(rest.stored().len(), 30);
}
