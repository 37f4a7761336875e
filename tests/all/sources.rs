//! Bad source rows as an operator meets them: each is reported with its line and skipped,
//! the rows after it are sent, and the source's file is read once.

use serde_json::{Value, json};
use sluice_sim::SimHandle;

use crate::common::{
    self, Expect, Ran, Scenario, Setup, assert_summary, assert_summary_of, is_delivered,
};

/// A sync `s` whose source is `data` in `format` ("jsonl" or "csv"), keyed by `id`, sent
/// in batches of two by one worker.
fn setup(dest: &SimHandle, format: &str, data: &[u8]) -> Setup {
    Scenario::rest(&dest.base_url())
        .source(format, data)
        .batches(2, 1)
        .setup()
}

/// The records the destination holds, by key.
fn stored(dest: &SimHandle) -> Vec<(String, Value)> {
    dest.stored().into_iter().collect()
}

/// The reported bug: a row with an unclosed quote took the four rows after it into one
/// field (`read 2, delivered 2, invalid 0` for six rows). Now that row is reported on its
/// line and the others are delivered as they are, through the `sluice` binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclosed_csv_quote_costs_only_its_row() {
    let dest = common::accepting().await;
    let csv = b"id,name\nr1,\"Ann\r\nLee\"\nr2,\"Bo, Jr.\"\nr3,\"Cy\nr4,Di\nr5,Ed\nr6,Fay\n";
    let setup = setup(&dest, "csv", csv);
    let out = common::sluice_ok(&["run", "--json"], &setup.config_path(), &[]).await;
    let summary = &common::json_lines(&out)[0];
    assert_eq!(
        (
            &summary["outcome"],
            &summary["read"],
            &summary["delivered"],
            &summary["invalid_rows"]
        ),
        (&json!("completed"), &json!(5), &json!(5), &json!(1)),
        "{out}"
    );
    assert_eq!(
        stored(&dest),
        [
            ("r1".into(), json!({"id": "r1", "name": "Ann\r\nLee"})),
            ("r2".into(), json!({"id": "r2", "name": "Bo, Jr."})),
            ("r4".into(), json!({"id": "r4", "name": "Di"})),
            ("r5".into(), json!({"id": "r5", "name": "Ed"})),
            ("r6".into(), json!({"id": "r6", "name": "Fay"})),
        ]
    );
    // The report names the row and why.
    let again = common::sluice_ok(&["run", "--sync", "s"], &setup.config_path(), &[]).await;
    assert!(
        again.contains("skipped source line 5: unclosed quote"),
        "{again}"
    );
}

/// One byte that is not UTF-8 failed the whole sync, every run; now its row is reported
/// with where the byte is, and the rest are delivered. JSONL and CSV alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_is_not_utf8_is_skipped_and_reported() {
    for (format, data, line, reason) in [
        (
            "jsonl",
            &b"{\"id\": \"a\"}\n{\"id\": \"b\", \"name\": \"\xe9\"}\n{\"id\": \"c\"}\n"[..],
            2,
            "not UTF-8: the line has an invalid byte at byte 21",
        ),
        (
            "csv",
            &b"id,name\na,x\nb,\xe9\nc,y\n"[..],
            3,
            "not UTF-8: column `name` has an invalid byte at byte 0",
        ),
    ] {
        let dest = common::accepting().await;
        let ran = Ran::of(setup(&dest, format, data)).await;
        let expect = Expect::completed().read(2).delivered(2).invalid_rows(1);
        assert_summary_of(format, ran.summary(), expect);
        assert_eq!(ran.fates.keys(is_delivered), ["a", "c"], "{format}");
        let skipped: Vec<(u64, &str)> = ran
            .report
            .summary
            .skipped_rows
            .iter()
            .map(|r| (r.line, r.reason.as_str()))
            .collect();
        assert_eq!(skipped, [(line, reason)], "{format}");
    }
}

/// A file saved with a byte-order mark lost its first row ("not a JSON object").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_order_mark_is_ignored() {
    for (format, data) in [
        (
            "jsonl",
            &b"\xEF\xBB\xBF{\"id\": \"a\", \"n\": 1}\n{\"id\": \"b\", \"n\": 2}\n"[..],
        ),
        ("csv", &b"\xEF\xBB\xBFid,n\na,1\nb,2\n"[..]),
    ] {
        let dest = common::accepting().await;
        let ran = Ran::of(setup(&dest, format, data)).await;
        let expect = Expect::default().read(2).delivered(2).invalid_rows(0);
        assert_summary_of(format, ran.summary(), expect);
        let keys: Vec<String> = stored(&dest).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a", "b"], "{format}");
    }
}

/// Keys went through f64: these two became one key, and one record was never sent
/// ("repeated key"). A numeric key is now its text as written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numeric_keys_keep_every_digit() {
    let dest = common::accepting().await;
    let jsonl = b"{\"id\": 12345678901234567890123, \"v\": 1}\n{\"id\": 12345678901234567890124, \"v\": 2}\n{\"id\": 1.50}\n{\"id\": 1.5}\n";
    let setup = setup(&dest, "jsonl", jsonl);
    let (report, fates) = common::run(&setup).await;
    let s = &report.summary;
    assert_eq!(
        (s.read, s.duplicate_keys, s.delivered),
        (4, 0, 4),
        "{:?}",
        report.summary.skipped_rows
    );
    assert_eq!(
        fates.keys(is_delivered),
        [
            "1.5",
            "1.50",
            "12345678901234567890123",
            "12345678901234567890124"
        ]
    );
    let sent: usize = dest
        .requests()
        .iter()
        .filter(|r| r.path == "/v1/records")
        .map(|r| r.keys.len())
        .sum();
    assert_eq!(sent, 4);
    // The ledger keeps them apart too: a second run finds all four unchanged.
    let (again, _) = common::run(&setup).await;
    assert_eq!((again.summary.unchanged, again.summary.delivered), (4, 0));
}

/// A directory given as the source was "not found".
/// A directory given as the source: the run fails, saying so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_as_the_source_is_named_as_one() {
    let dest = common::accepting().await;
    let setup = setup(&dest, "jsonl", b"");
    std::fs::remove_file(setup.dir.path().join("data.jsonl")).unwrap();
    std::fs::create_dir(setup.dir.path().join("data.jsonl")).unwrap();
    let (report, _) = common::run(&setup).await;
    let error = report.summary.error.clone().unwrap_or_default();
    assert_summary(&report.summary, Expect::failed().read(0));
    assert!(
        error.contains("data.jsonl` is a directory; give the JSONL or CSV file to read"),
        "{error}"
    );
}

/// The reported bug: one sync's source file missing (a late export) refused the whole
/// config, so no sync ran and not even the ledger could be read. Now only that sync
/// fails, naming the file; the others run, and the ledger's commands work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_source_file_stops_only_its_own_sync() {
    let dest = common::accepting().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.jsonl"), "{\"id\": \"g1\"}\n").unwrap();
    let sync = |name: &str| {
        format!(
            "[[sync]]\nname = \"{name}\"\nconnector = \"c\"\n\
             source = {{ jsonl = \"{name}.jsonl\", key = \"id\" }}\n\
             base_url = \"{}\"\nsettings = {}\n",
            dest.base_url(),
            common::REST_PATH
        )
    };
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"state\"\n[connectors.c]\ncomponent = \"builtin:rest\"\n\n{}\n{}",
            sync("late"),
            sync("good")
        ),
    )
    .unwrap();
    let run = common::sluice(&["run", "--json"], &config, &[]).await;
    assert_eq!(run.status.code(), Some(1), "{run:?}");
    let lines = common::json_lines(&String::from_utf8(run.stdout).unwrap());
    assert_eq!(lines.len(), 2, "{lines:?}");
    let (late, good) = (&lines[0], &lines[1]);
    assert_eq!(
        (&late["sync"], &late["outcome"]),
        (&json!("late"), &json!("failed"))
    );
    let error = late["error"].as_str().unwrap();
    assert!(
        error.contains("cannot open source file `") && error.contains("late.jsonl`"),
        "{error}"
    );
    assert_eq!(
        (&good["sync"], &good["delivered"]),
        (&json!("good"), &json!(1))
    );
    assert_eq!(dest.stored().len(), 1);
    let listed = common::sluice_ok(
        &["ledger", "list", "--sync", "good", "--json"],
        &config,
        &[],
    )
    .await;
    assert_eq!(common::json_lines(&listed)[0]["key"], "g1");
}

/// A source gone by the time the run opens it: the run fails, naming the file and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_cannot_be_opened_names_the_file_and_the_reason() {
    let dest = common::accepting().await;
    let setup = setup(&dest, "jsonl", b"{\"id\": \"a\"}\n");
    std::fs::remove_file(setup.dir.path().join("data.jsonl")).unwrap();
    let (report, _) = common::run(&setup).await;
    let s = &report.summary;
    let error = s.error.clone().unwrap_or_default();
    assert_summary(s, Expect::failed().read(0));
    assert!(
        error.contains("cannot open source file `")
            && error.contains("data.jsonl`: No such file or directory"),
        "{error}"
    );
}

/// A source of 240 lines, every even one without a key: `run` named only the first 8 of
/// its 120 skipped rows, `run --json` and `runs --json` none, no message named the file,
/// and `plan` said "row" where `run` said "line". Now the report names the first 8 and
/// says how many more and where they are; the JSON summaries keep the first 100 (with the
/// file) of the 120 counted; `plan` words them as `run` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_skipped_row_is_reported_the_first_hundred_in_the_json() {
    let dest = common::accepting().await;
    let data: String = (1..=120)
        .map(|n| format!("{{\"id\": \"ok{n}\"}}\n{{\"noid\": {n}}}\n"))
        .collect();
    let setup = setup(&dest, "jsonl", data.as_bytes());
    let config = setup.config_path();
    let file = setup.dir.path().join("data.jsonl");
    let why = "the key field `id` is missing";
    let mut expected: String = (1..=8)
        .map(|n| format!("  skipped source line {}: {why}\n", 2 * n))
        .collect();
    expected.push_str(
        "  and 112 more skipped source lines: `--json` lists the first 100, and \
         `RUST_LOG=sluice=info` logs every one\n",
    );

    let plan = common::sluice_ok(&["plan"], &config, &[]).await;
    assert!(plan.ends_with(&expected), "{plan}");
    let report = common::sluice_ok(&["run"], &config, &[]).await;
    assert!(report.ends_with(&expected), "{report}");
    assert!(
        report.contains("  invalid source rows          120\n"),
        "{report}"
    );

    // A second run reads the same rows (the others are unchanged): its summary and the
    // history's keep the first 100, each with its line, reason and file.
    let rows: Vec<Value> = (1..=100)
        .map(|n| json!({"line": 2 * n, "reason": why, "file": file}))
        .collect();
    let summary =
        &common::json_lines(&common::sluice_ok(&["run", "--json"], &config, &[]).await)[0];
    assert_eq!(
        (&summary["invalid_rows"], &summary["skipped_rows"]),
        (&json!(120), &json!(rows))
    );
    let history = common::json_lines(&common::sluice_ok(&["runs", "--json"], &config, &[]).await);
    assert_eq!(history[0]["skipped_rows"], json!(rows));
    assert_eq!(history[1]["skipped_rows"], json!(rows));

    // Every row is in the log, naming the file and the line.
    let output = common::sluice(&["plan"], &config, &[("RUST_LOG", "sluice=info")]).await;
    let log = String::from_utf8_lossy(&output.stderr);
    for n in [1, 120] {
        let line = format!(
            "skipped source line {} of `{}`: {why}",
            2 * n,
            file.display()
        );
        assert!(log.contains(&line), "{line}: {log}");
    }
    assert_eq!(log.matches("skipped source line").count(), 120, "{log}");
}
