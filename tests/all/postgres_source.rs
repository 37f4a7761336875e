//! A PostgreSQL query as the source, against a real PostgreSQL: every column type becomes
//! the JSON the docs state, the key may be an integer column, and a query that fails
//! fails the run before anything is sent.

use serde_json::{Value, json};

use crate::common::{self, Postgres, Scenario};

const URL_ENV: &str = "SLUICE_TEST_ANALYTICS_DB_URL";

async fn run_json(scenario: &Scenario, pg: &Postgres) -> (std::process::Output, Value) {
    let setup = scenario.setup();
    let output = common::sluice(
        &["run", "--json"],
        &setup.config_path(),
        &[(URL_ENV, &pg.url)],
    )
    .await;
    let summary = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (output, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_column_type_becomes_the_json_the_docs_state() {
    let Some(pg) = Postgres::start() else { return };
    pg.execute(
        r#"
        create table accounts (
            id bigint primary key, name text, score double precision, balance numeric,
            odd numeric, active boolean, seen timestamptz, born date, at timestamp,
            doc jsonb, tags text[], ref uuid, blob bytea, missing text, small smallint,
            price numeric(10, 2)
        );
        insert into accounts values
          (1, 'Ann "Quote" Lee ☃', 1.5, 12345678901234567890.123456789, 'NaN', true,
           '2024-01-02 03:04:05.5+02', '2024-01-31', '2024-01-02 03:04:05',
           '{"a": [1, {"b": null}]}', '{x,"y z"}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
           '\x00ff10', null, 7, 19.99),
          (2, 'Bo', -0.25, 0, 1, false, null, null, null, '[]', '{}', null, '', null, null, null);
        "#,
    )
    .await;
    let dest = common::accepting().await;
    let scenario = Scenario::rest(&dest.base_url()).postgres_source(
        URL_ENV,
        "select * from accounts where id < 100 order by id;",
    );
    let (output, summary) = run_json(&scenario, &pg).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        (summary["read"].as_u64(), summary["delivered"].as_u64()),
        (Some(2), Some(2)),
        "{summary}"
    );
    let stored = dest.stored();
    let one = &stored["1"];
    let expected = json!({
        "id": 1, "name": "Ann \"Quote\" Lee ☃", "score": 1.5,
        "odd": "NaN", "active": true, "seen": "2024-01-02T01:04:05.5+00:00", "born": "2024-01-31",
        "at": "2024-01-02T03:04:05.000000Z", "doc": {"a": [1, {"b": null}]}, "tags": ["x", "y z"],
        "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "blob": "AP8Q", "missing": null, "small": 7,
        "price": 19.99,
        // Wider than a double: its exact text, as a string.
        "balance": "12345678901234567890.123456789"
    });
    for (field, value) in expected.as_object().unwrap() {
        assert_eq!(&one[field], value, "{field}: {one}");
    }
    assert_eq!(stored["2"]["balance"], 0);
    assert_eq!(stored["2"]["blob"], "");
    assert_eq!(stored["2"]["seen"], Value::Null);
}

/// Types the reader does not decode itself are written by the server's `to_json`; values at
/// the edges of the decoded ones keep their meaning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_types_and_edge_values_become_json_too() {
    let Some(pg) = Postgres::start() else { return };
    pg.execute(
        r#"
        create type mood as enum ('calm', 'busy');
        create table edges (
            id text primary key, spell interval, feeling mood, noon time, amounts numeric[],
            raw json, ratio real, count integer, code char(3), label varchar(10),
            forever timestamptz, bad double precision, first date, tiny numeric
        );
        insert into edges values
          ('e1', '1 day 02:00:00', 'busy', '12:30:00', '{1.5,2}',
           E'{
  "k": "line\\nbreak",
  "n": [1,
 2]
}', 0.1, -2147483648, 'ab',
           'x', 'infinity', 'NaN', '0001-01-01', 0.000000000000000000000000000001);
        "#,
    )
    .await;
    let dest = common::accepting().await;
    let scenario = Scenario::rest(&dest.base_url()).postgres_source(URL_ENV, "select * from edges");
    let (output, summary) = run_json(&scenario, &pg).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(summary["delivered"].as_u64(), Some(1), "{summary}");
    let expected = json!({
        "id": "e1", "spell": "1 day 02:00:00", "feeling": "busy", "noon": "12:30:00",
        "amounts": [1.5, 2], "raw": {"k": "line\nbreak", "n": [1, 2]}, "ratio": 0.1,
        "count": -2147483648i64, "code": "ab ", "label": "x", "forever": "infinity",
        "bad": "NaN", "first": "0001-01-01"
    });
    let mut stored = dest.stored()["e1"].clone();
    // A number, not a string: 1e-30 has one significant digit. (The test's JSON parser
    // reads floats to within a bit, so the value is compared that closely.)
    let tiny = stored.as_object_mut().unwrap().remove("tiny").unwrap();
    assert!(
        (tiny.as_f64().unwrap() / 1e-30 - 1.0).abs() < 1e-12,
        "{tiny}"
    );
    assert_eq!(stored, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_that_fails_fails_the_run_with_the_databases_words_and_sends_nothing() {
    let Some(pg) = Postgres::start() else { return };
    let dest = common::accepting().await;
    for (query, said) in [
        (
            "select * from nowhere",
            "relation \"nowhere\" does not exist",
        ),
        ("selec 1", "syntax error at or near \"selec\""),
        // Fails on its third row, after two were streamed.
        (
            "select g as id, 10 / (3 - g) as x from generate_series(1, 5) g",
            "division by zero",
        ),
    ] {
        let scenario = Scenario::rest(&dest.base_url()).postgres_source(URL_ENV, query);
        let (output, summary) = run_json(&scenario, &pg).await;
        assert_eq!(output.status.code(), Some(1), "{query}");
        let error = summary["error"].as_str().unwrap_or_default();
        assert!(error.contains(said), "{query}: {summary}");
        assert!(
            !error.contains(&pg.url),
            "the URL is never printed: {error}"
        );
    }
    assert_eq!(dest.stats().requests, 0, "nothing of a failed read is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_url_must_be_set_before_anything_runs() {
    let dest = common::accepting().await;
    let setup = Scenario::rest(&dest.base_url())
        .postgres_source("SLUICE_TEST_UNSET_DB_URL", "select 1 as id")
        .setup();
    let output = common::sluice(&["run"], &setup.config_path(), &[]).await;
    // Exit code 6: a credential missing from the environment (docs/cli.md).
    assert_eq!(output.status.code(), Some(6));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("`SLUICE_TEST_UNSET_DB_URL` (source.postgres.url_env) is not set"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_mid_stream_fails_the_run_and_sends_nothing() {
    let Some(pg) = Postgres::start() else { return };
    let dest = common::accepting().await;
    // Slow rows: about five seconds of them.
    let query = "select g as id, pg_sleep(0.01) as slept from generate_series(1, 500) g";
    let setup = Scenario::rest(&dest.base_url())
        .postgres_source(URL_ENV, query)
        .setup();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["run", "--json", "--config"])
        .arg(setup.config_path())
        .env(URL_ENV, &pg.url)
        .output();
    let kill = async {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        pg.execute(
            "select pg_terminate_backend(pid) from pg_stat_activity \
             where query like '%generate_series%' and pid <> pg_backend_pid()",
        )
        .await;
    };
    let (output, ()) = tokio::join!(child, kill);
    let output = output.unwrap();
    assert_eq!(output.status.code(), Some(1));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let error = summary["error"].as_str().unwrap();
    assert!(
        error.contains("the PostgreSQL source's query failed while its rows were read"),
        "{error}"
    );
    assert_eq!(dest.stats().requests, 0, "nothing of a cut read is sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_100000_rows_is_delivered_exactly() {
    let Some(pg) = Postgres::start() else { return };
    pg.execute(
        "create table big as select g as id, 'name ' || g as name, g * 0.5 as half \
         from generate_series(1, 100000) g",
    )
    .await;
    let dest = common::accepting().await;
    let scenario = Scenario::rest(&dest.base_url())
        .postgres_source(URL_ENV, "select * from big")
        .batches(500, 4);
    let (output, summary) = run_json(&scenario, &pg).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(summary["delivered"], 100_000, "{summary}");
    let stored = dest.stored();
    assert_eq!(stored.len(), 100_000);
    for id in [1u64, 2, 50_000, 99_999, 100_000] {
        let record = &stored[&id.to_string()];
        assert_eq!(record["name"], format!("name {id}"));
        assert_eq!(record["half"].as_f64(), Some(id as f64 * 0.5), "{record}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_the_user_may_not_run_fails_with_the_permission_error() {
    let Some(pg) = Postgres::start() else { return };
    pg.execute("create table secret (id int); create role reader login;")
        .await;
    let dest = common::accepting().await;
    let reader_url = pg.url.replacen("sluice@", "reader@", 1);
    let setup = Scenario::rest(&dest.base_url())
        .postgres_source(URL_ENV, "select * from secret")
        .setup();
    let output = common::sluice(
        &["run", "--json"],
        &setup.config_path(),
        &[(URL_ENV, &reader_url)],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let error = summary["error"].as_str().unwrap();
    assert!(
        error.contains("permission denied for table secret"),
        "{error}"
    );
    assert_eq!(dest.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_without_a_key_is_skipped_and_named_by_its_row_number() {
    let Some(pg) = Postgres::start() else { return };
    let dest = common::accepting().await;
    let query = "select * from (values (1, 'a'), (null, 'b'), (3, 'c')) as t(id, name)";
    let setup = Scenario::rest(&dest.base_url())
        .postgres_source(URL_ENV, query)
        .setup();
    let output = common::sluice(&["run"], &setup.config_path(), &[(URL_ENV, &pg.url)]).await;
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("skipped source row 2: "), "{report}");
    let stored = dest.stored();
    assert_eq!(stored.keys().cloned().collect::<Vec<_>>(), ["1", "3"]);
}

/// A query without the key's column is a mistake in the config, not a million rows each
/// missing its key: the run stops before reading, naming the columns there are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_without_the_key_column_fails_naming_its_columns() {
    let Some(pg) = Postgres::start() else { return };
    let dest = common::accepting().await;
    let scenario = Scenario::rest(&dest.base_url())
        .postgres_source(URL_ENV, "select 1 as account_id, 'a' as name");
    let (output, summary) = run_json(&scenario, &pg).await;
    assert_eq!(output.status.code(), Some(1));
    let error = summary["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("has no column `id`, the sync's key; its columns are: account_id, name"),
        "{summary}"
    );
    assert_eq!(dest.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_database_url_is_refused_without_printing_its_password() {
    let dest = common::accepting().await;
    let setup = Scenario::rest(&dest.base_url())
        .postgres_source(URL_ENV, "select 1 as id")
        .setup();
    for url in [
        "postgres://sync:Zx9-secret-pw@127.0.0.1:notaport/db",
        "postgres://sync:Zx9-secret-pw@127.0.0.1:1/db",
    ] {
        let output =
            common::sluice(&["run", "--json"], &setup.config_path(), &[(URL_ENV, url)]).await;
        assert_eq!(output.status.code(), Some(1), "{url}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stdout.contains("connecting to the PostgreSQL source"),
            "{stdout}"
        );
        assert!(
            !stdout.contains("Zx9-secret-pw") && !stderr.contains("Zx9-secret-pw"),
            "{stdout}{stderr}"
        );
    }
    assert_eq!(dest.stats().requests, 0);
}
