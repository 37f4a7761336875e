//! Bad rows and repeated keys are reported, and the run goes on.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_and_repeated_keys_are_reported_and_the_run_goes_on() {
    let dest = common::accepting().await;
    let setup = batches_of_20(&dest, contacts(5)).setup();
    let text = [
        r#"{"id": "a", "v": 1}"#,
        r#"{"v": "no key"}"#,
        r#"{"id": "b", "v": 1}"#,
        r#"not json"#,
        r#"{"id": "a", "v": 2}"#,
        r#"{"id": "c", "v": 1}"#,
        r#"{"id": "a", "v": 3}"#,
    ]
    .join("\n");
    std::fs::write(setup.dir.path().join("data.jsonl"), text).unwrap();
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_eq!(
        (
            s.outcome,
            s.read,
            s.invalid_rows,
            s.duplicate_keys,
            s.delivered,
            s.pending
        ),
        (Outcome::Completed, 5, 2, 2, 3, 0)
    );
    let lines: Vec<(u64, bool)> = report
        .summary
        .skipped_rows
        .iter()
        .map(|r| (r.line, r.reason.contains("last row wins")))
        .collect();
    assert_eq!(lines, [(1, true), (2, false), (4, false), (5, true)]);
    assert_eq!(
        dest.stored_record("a").unwrap()["v"],
        json!(3),
        "the last row of a repeated key wins"
    );
    assert_eq!(fates.keys(is_delivered), ["a", "b", "c"]);
}
