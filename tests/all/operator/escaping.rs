//! What a destination says is escaped for people and defused for spreadsheets.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_are_escaped_for_people_and_formulas_defused_in_csv() {
    let dest = common::checking_emails().await;
    let dir = tempfile::tempdir().unwrap();
    let keys = [
        "evil\u{1b}[31mred",
        "=cmd|' /C calc'!A0",
        "csi\u{9b}2Jkey",
        "plain",
    ];
    let data: String = [
        json!({"id": keys[0], "email": "nope"}),
        json!({"id": keys[1], "email": "also nope"}),
        json!({"id": keys[2], "email": "c@example.com"}),
        json!({"id": keys[3], "email": "p@example.com"}),
    ]
    .iter()
    .map(|r| format!("{r}\n"))
    .collect();
    let config = write_config(
        dir.path(),
        &dest.base_url(),
        "builtin:rest",
        &[("s", &data, PER_RECORD)],
        "",
    );
    let raw = |text: &str| text.contains(['\u{1b}', '\u{9b}']);

    let report = common::sluice_ok(&["run"], &config, &[]).await;
    assert!(!raw(&report), "{report:?}");
    assert!(report.contains("evil\\u{1b}[31mred rejected"), "{report}");

    let table = common::sluice_ok(&["ledger", "list", "--sync", "s"], &config, &[]).await;
    assert!(!raw(&table), "{table:?}");
    assert!(
        table.contains("evil\\u{1b}[31mred") && table.contains("csi\\u{9b}2Jkey"),
        "{table}"
    );

    let inspect = common::sluice_ok(&["inspect", "--sync", "s"], &config, &[]).await;
    assert!(!raw(&inspect), "{inspect:?}");
    assert!(inspect.contains("csi\\u{9b}2Jkey"), "{inspect}");

    // JSON keeps every key exactly (escaped the JSON way).
    let listed =
        common::sluice_ok(&["ledger", "list", "--sync", "s", "--json"], &config, &[]).await;
    assert!(!raw(&listed), "{listed:?}");
    let mut listed: Vec<String> = common::json_lines(&listed)
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect();
    listed.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);

    let csv = common::sluice_ok(
        &[
            "ledger", "list", "--sync", "s", "--status", "rejected", "--csv",
        ],
        &config,
        &[],
    )
    .await;
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let keys: Vec<String> = rows.records().map(|r| r.unwrap()[0].to_string()).collect();
    assert!(keys.contains(&"'=cmd|' /C calc'!A0".to_string()), "{csv}");
    assert!(keys.contains(&"evil\u{1b}[31mred".to_string()), "{csv}");
    let help = common::sluice_ok(&["ledger", "list", "--help"], &config, &[]).await;
    assert!(help.contains("prefixed with `'`"), "{help}");
}
