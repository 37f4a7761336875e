//! A person's resolution of a record must say who and why.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolution_needs_who_and_why() {
    let dest = common::checking_emails().await;
    let (_dir, config) = one_sync(
        &dest,
        "{\"id\": \"bad\", \"email\": \"nope\"}\n",
        PER_RECORD,
    );
    common::sluice_ok(&["run"], &config, &[]).await;
    for (by, why, named) in [
        ("", "", "--by"),
        ("  ", "fixed", "--by"),
        ("ana", " \t", "--why"),
    ] {
        let output = common::sluice(
            &[
                "ledger", "resolve", "--sync", "s", "--key", "bad", "--by", by, "--why", why,
            ],
            &config,
            &[],
        )
        .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(named) && stderr.contains("blank"),
            "{stderr}"
        );
    }
    let shown: serde_json::Value = serde_json::from_str(
        &common::sluice_ok(&["ledger", "show", "--sync", "s", "bad"], &config, &[]).await,
    )
    .unwrap();
    assert_eq!(shown["status"], "rejected");
    assert_eq!(shown["resolution"], serde_json::Value::Null);
}
