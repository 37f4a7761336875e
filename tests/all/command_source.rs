//! A command's output as the source: run as given (no shell), its stderr in the log, and
//! a failed or killed command fails the run before anything is sent.

use sluice_sim::rest::RestConfig;

use crate::common::{self, Expect, Scenario};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commands_output_is_delivered_exactly() {
    let dest = common::checking_emails_with(RestConfig::default()).await;
    // `cat` reads the records written beside the config: the command runs in its folder.
    let ran = Scenario::contacts_to(&dest.base_url(), 25)
        .command_source(&["cat", "data.jsonl"], "jsonl")
        .run()
        .await;
    ran.expect(Expect::completed().read(25).delivered(25));
    let stored = dest.stored();
    assert_eq!(stored.len(), 25);
    for contact in common::contacts(25) {
        let key = contact["id"].as_str().unwrap();
        assert_eq!(stored[key]["email"], contact["email"], "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_reach_the_program_as_given_without_a_shell() {
    let dest = common::checking_emails_with(RestConfig::default()).await;
    // A shell would split, expand and redirect these; run as given they are one
    // argument each, printed back as the lines of the source.
    let row = r#"{"id": "a b; $HOME > x", "email": "q@example.com"}"#;
    let ran = Scenario::contacts_to(&dest.base_url(), 0)
        .command_source(&["printf", "%s\n", row], "jsonl")
        .run()
        .await;
    ran.expect(Expect::completed().read(1).delivered(1));
    assert!(dest.stored().contains_key("a b; $HOME > x"));
    assert!(!ran.setup.dir.path().join("x").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_fails_fails_the_run_with_its_status_and_last_words_and_sends_nothing() {
    let dest = common::checking_emails_with(RestConfig::default()).await;
    let script = "cat data.jsonl; echo 'ERROR: relation \"accounts\" does not exist' >&2; exit 3";
    let scenario =
        Scenario::contacts_to(&dest.base_url(), 10).command_source(&["sh", "-c", script], "jsonl");
    let setup = scenario.setup();
    let output = common::sluice(&["run", "--json"], &setup.config_path(), &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["outcome"], "failed");
    let error = summary["error"].as_str().unwrap();
    assert!(
        error.contains("source command `sh`")
            && error.contains("the program exited with status 3")
            && error.contains("relation \"accounts\" does not exist"),
        "{error}"
    );
    // What it said on stderr is in the log too, in the run's span.
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("relation \"accounts\" does not exist") && log.contains("sync=s"),
        "{log}"
    );
    assert_eq!(dest.stats().requests, 0, "nothing of a failed read is sent");
    let ledger = sluice::ledger::Ledger::open(&setup.config.state_dir).unwrap();
    assert!(
        ledger.sync("s").unwrap().iter().next().is_none(),
        "nor recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_killed_by_a_signal_fails_the_run() {
    let dest = common::checking_emails_with(RestConfig::default()).await;
    let ran = Scenario::contacts_to(&dest.base_url(), 5)
        .command_source(&["sh", "-c", "cat data.jsonl; kill -9 $$"], "jsonl")
        .setup();
    let output = common::sluice(&["run"], &ran.config_path(), &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains("the program was killed by signal 9"),
        "{report}"
    );
    assert_eq!(dest.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_program_that_cannot_be_run_is_named() {
    let dest = common::checking_emails_with(RestConfig::default()).await;
    let setup = Scenario::contacts_to(&dest.base_url(), 1)
        .command_source(&["no-such-exporter-here", "--all"], "csv")
        .setup();
    let output = common::sluice(&["run"], &setup.config_path(), &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        report.contains("cannot run the source command `no-such-exporter-here`")
            && report.contains("No such file or directory"),
        "{report}"
    );
}

#[test]
fn a_command_source_needs_its_format_and_a_program() {
    let refused = |source: &str| {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[connectors.c]\ncomponent = \"builtin:rest\"\n[[sync]]\nname = \"s\"\nconnector = \"c\"\nsource = {source}\nbase_url = \"http://127.0.0.1:9\"\nsettings = {{ path = \"/v1/records\" }}\n"
        );
        let path = dir.path().join("sluice.toml");
        format!(
            "{:#}",
            sluice::config::Config::parse(&text, &path).err().unwrap()
        )
    };
    let err = refused(r#"{ command = ["psql"], key = "id" }"#);
    assert!(
        err.contains("source.format: a command's output needs its format"),
        "{err}"
    );
    let err = refused(r#"{ command = ["psql"], format = "parquet", key = "id" }"#);
    assert!(err.contains("`parquet` is not a format"), "{err}");
    let err = refused(r#"{ command = [], format = "jsonl", key = "id" }"#);
    assert!(err.contains("give the program to run first"), "{err}");
    let err = refused(r#"{ jsonl = "a.jsonl", command = ["cat"], format = "jsonl", key = "id" }"#);
    assert!(err.contains("give exactly one of"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_lines_of_a_command_are_reported_with_their_numbers() {
    let dest = common::checking_emails_with(RestConfig::default()).await;
    let script = r#"echo '{"id": "a", "email": "a@example.com"}'; echo 'not json'; echo '{"id": "b", "email": "b@example.com"}'; echo '[1, 2]'"#;
    let ran = Scenario::contacts_to(&dest.base_url(), 0)
        .command_source(&["sh", "-c", script], "jsonl")
        .run()
        .await;
    ran.expect(Expect::completed().delivered(2).invalid_rows(2));
    let lines: Vec<u64> = ran
        .report
        .summary
        .skipped_rows
        .iter()
        .map(|row| row.line)
        .collect();
    assert_eq!(lines, [2, 4]);
    assert_eq!(dest.stored().len(), 2);
}

/// The program inherits the environment less the destinations' credentials: what it
/// prints goes to the log unscrubbed, and an exporter has no use for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_program_runs_without_the_destinations_credentials() {
    let dest = common::checking_emails_with(RestConfig::default()).await;
    let script = r#"printf '{"id": "c1", "email": "a@example.com", "seen": "%s", "home": "%s"}\n' "${SLUICE_TEST_CMD_TOKEN:-absent}" "${SLUICE_TEST_CMD_OTHER:-absent}"; echo "token: ${SLUICE_TEST_CMD_TOKEN:-absent}" >&2"#;
    let setup = Scenario::contacts_to(&dest.base_url(), 0)
        .command_source(&["sh", "-c", script], "jsonl")
        .sync(r#"auth = { bearer_env = "SLUICE_TEST_CMD_TOKEN" }"#)
        .setup();
    let token = "tok-Zq81-never-in-a-log";
    let output = common::sluice(
        &["run", "--json"],
        &setup.config_path(),
        &[
            ("SLUICE_TEST_CMD_TOKEN", token),
            ("SLUICE_TEST_CMD_OTHER", "kept"),
        ],
    )
    .await;
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    let stored = dest.stored();
    assert_eq!(
        (stored["c1"]["seen"].as_str(), stored["c1"]["home"].as_str()),
        (Some("absent"), Some("kept"))
    );
    assert!(log.contains("token: absent"), "{log}");
    assert!(!log.contains(token) && !String::from_utf8_lossy(&output.stdout).contains(token));
}
