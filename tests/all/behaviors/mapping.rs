//! `[sync.fields]`: the connector sees the mapped payload, a row missing a required
//! field is skipped and reported, and a field the destination never sees causes no resend.

use serde_json::json;

use super::run_again;
use crate::common::{Scenario, accepting};

fn rows(note: &str) -> Vec<serde_json::Value> {
    vec![
        json!({"id": "a", "email": "a@x.io", "full_name": "Ann", "note": note, "token": "s3"}),
        json!({"id": "b", "email": "b@x.io", "note": note}),
        json!({"id": "c", "full_name": "Cy", "note": note}),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_destination_sees_only_mapped_fields_and_unmapped_changes_send_nothing() {
    let dest = accepting().await;
    let ran = Scenario::rest(&dest.base_url())
        .records(rows("first"))
        .sync(r#"fields = { id = "id", Email = { from = "email", required = true }, Name = "full_name" }"#)
        .run()
        .await;
    let s = ran.summary();
    assert_eq!((s.read, s.delivered, s.invalid_rows), (2, 2, 1), "{s:?}");
    assert!(
        ran.report.summary.skipped_rows[0]
            .reason
            .contains("field `email` (mapped to `Email`) is missing and is required"),
        "{:?}",
        ran.report.summary.skipped_rows
    );
    let stored = dest.stored();
    assert_eq!(
        stored.get("a"),
        Some(&json!({"id": "a", "Email": "a@x.io", "Name": "Ann"}))
    );
    // A mapped field the row lacks is absent, not null.
    assert_eq!(
        stored.get("b"),
        Some(&json!({"id": "b", "Email": "b@x.io"}))
    );
    assert_eq!(stored.len(), 2);

    // Only an unmapped field changed: the destination would see the same payloads.
    let requests = dest.requests().len();
    let again = run_again(&ran, &rows("second")).await;
    assert_eq!((again.summary.unchanged, again.summary.delivered), (2, 0));
    assert_eq!(dest.requests().len(), requests, "nothing was sent");
}

#[tokio::test]
async fn a_bad_mapping_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = Scenario::rest("http://127.0.0.1:9")
        .records(rows("x"))
        .sync(r#"fields = { Email = { from = "email", required = "yes" } }"#);
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, scenario.config_text()).unwrap();
    std::fs::write(dir.path().join("data.jsonl"), "").unwrap();
    let err = format!("{:#}", sluice::config::Config::load(&path).unwrap_err());
    assert!(err.contains("fields.Email.required"), "{err}");
}
