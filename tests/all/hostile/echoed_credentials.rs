//! An echoed credential reaches none of the run's output, its debug log, the ledger, the
//! inspector, or the bytes under `state_dir`.

use super::*;

/// A secret with characters that base64 and percent-encoding change, so that each of its
/// three forms is distinct.
const SECRET: &str = "Zq8+Wm3=Xv5/Tk7+Pb2";

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Runs the sync with the `sluice` binary twice (the human report, then `--json`), with a
/// debug log, then reads it back every way an operator can (ledger, inspector, run
/// history) and every file under `state_dir`: the secret is in none of them, in any of its
/// forms. Returns the `--json` summary and the ledger as `ledger list --json` prints it.
async fn assert_secret_nowhere(
    setup: &Setup,
    env: &[(&str, &str)],
    secrets: &[&str],
) -> (Value, Vec<Value>) {
    let config = setup.config_path();
    let mut env = env.to_vec();
    env.push(("RUST_LOG", "debug"));
    let human = common::sluice(&["run"], &config, &env).await;
    let json = common::sluice(&["run", "--json"], &config, &env).await;
    let ledger = common::sluice(&["ledger", "list", "--sync", "s", "--json"], &config, &env).await;
    let table = common::sluice(&["ledger", "list", "--sync", "s"], &config, &env).await;
    let inspect = common::sluice(&["inspect", "--sync", "s", "--json"], &config, &env).await;
    let inspect_human = common::sluice(&["inspect", "--sync", "s"], &config, &env).await;
    let runs = common::sluice(&["runs", "--json"], &config, &env).await;
    for (what, out) in [
        ("ledger list --json", &ledger),
        ("inspect --json", &inspect),
        ("runs --json", &runs),
    ] {
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let inspected = String::from_utf8_lossy(&inspect.stdout);
    assert!(
        inspected.contains(hostile::ECHO_HEADER),
        "the inspector holds the echoing answers: {inspected}"
    );

    let mut places: Vec<(String, Vec<u8>)> = vec![
        ("`sluice run` stdout".into(), human.stdout.clone()),
        (
            "`sluice run` stderr (debug log)".into(),
            human.stderr.clone(),
        ),
        ("`sluice run --json` stdout".into(), json.stdout.clone()),
        (
            "`sluice run --json` stderr (debug log)".into(),
            json.stderr.clone(),
        ),
        ("`sluice ledger list --json`".into(), ledger.stdout.clone()),
        ("`sluice ledger list`".into(), table.stdout.clone()),
        ("`sluice inspect --json`".into(), inspect.stdout.clone()),
        ("`sluice inspect`".into(), inspect_human.stdout.clone()),
        ("`sluice runs --json`".into(), runs.stdout.clone()),
    ];
    let stored = common::state::everything_stored(&setup.config).await;
    assert!(
        stored.iter().any(|(_, bytes)| !bytes.is_empty()),
        "nothing stored for {}",
        setup.config.state_dir.display()
    );
    places.extend(stored);
    let mut forms: Vec<String> = secrets.iter().flat_map(|s| credential_forms(s)).collect();
    forms.sort();
    forms.dedup();
    let leaks: Vec<String> = places
        .iter()
        .flat_map(|(what, bytes)| {
            forms
                .iter()
                .filter(|form| contains(bytes, form))
                .map(move |form| format!("{form} in {what}"))
        })
        .collect();
    assert!(leaks.is_empty(), "the secret leaked:\n{}", leaks.join("\n"));
    let summary = serde_json::from_slice(&json.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&json.stdout)));
    (
        summary,
        common::json_lines(&String::from_utf8_lossy(&ledger.stdout)),
    )
}

/// Every record of `ledger` (as `ledger list --json` prints it) by key: status, code,
/// message and fields.
fn ledger_failures(ledger: &[Value]) -> BTreeMap<String, Value> {
    ledger
        .iter()
        .map(|e| {
            (
                e["key"].as_str().unwrap().to_string(),
                json!([e["status"], e["code"], e["message"], e["fields"]]),
            )
        })
        .collect()
}

/// How an echoing refusal of a record reads in `ledger list --json`, scrubbed.
fn scrubbed_refusal() -> Value {
    json!([
        "rejected",
        "DENIED [redacted]",
        "credential [redacted] is not allowed here (base64 [redacted]; see /help?credential=[redacted])",
        ["[redacted]", "email"],
    ])
}

/// A destination that echoes the bearer token [`SECRET`] (read from `env`) in answers of
/// `status`, and five records sent to it by [`assert_secret_nowhere`]: the destination, the
/// JSON summary and the ledger's entries.
async fn bearer_echoed_in(status: u16, env: &str) -> (HostileHandle, Value, Vec<Value>) {
    let dest = destination(Misbehaviour::EchoCredential { status }, None).await;
    let auth = format!("auth = {{ bearer_env = \"{env}\" }}");
    let setup = scenario(&dest, 5, &auth).setup();
    let (summary, ledger) = assert_secret_nowhere(&setup, &[(env, SECRET)], &[SECRET]).await;
    (dest, summary, ledger)
}

/// The destination puts the bearer token into every per-record error (code, message as
/// is, in base64 and percent-encoded, and the field list), a response header and the body.
/// The records are rejected with the scrubbed failure; the token is nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_bearer_token_reaches_no_output_log_ledger_inspector_or_file() {
    let (dest, summary, ledger) = bearer_echoed_in(200, "HOSTILE_ECHO_BEARER").await;
    assert_eq!(dest.request_count(), 2, "one request a run");
    assert!(
        dest.requests()
            .iter()
            .all(|r| r.header("authorization") == Some(&format!("Bearer {SECRET}")))
    );
    assert_eq!(
        (
            &summary["outcome"],
            &summary["rejected"],
            &summary["delivered"],
            &summary["requests"]
        ),
        (&json!("completed"), &json!(5), &json!(0), &json!(1))
    );
    // The header's whole value is a secret, its scheme included.
    let failure = scrubbed_refusal();
    let keys: Vec<String> = (0..5).map(|i| format!("h{i:02}")).collect();
    let expected: BTreeMap<String, Value> =
        keys.iter().map(|k| (k.clone(), failure.clone())).collect();
    assert_eq!(ledger_failures(&ledger), expected);
    assert!(dest.stored().is_empty());
}

/// The same for an API key in its own header, echoed in a whole-batch 422: the batch is
/// bisected down to single records, each rejected with the scrubbed code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_api_key_in_a_refused_batch_reaches_nothing() {
    let echo = HostileConfig::doing(Misbehaviour::EchoCredential { status: 422 }, None);
    let dest = hostile::start(echo.with_credential_header("X-Api-Key"))
        .await
        .unwrap();
    let setup = scenario(
        &dest,
        5,
        "auth = { header = \"X-Api-Key\", value_env = \"HOSTILE_ECHO_API_KEY\" }",
    )
    .setup();
    let (summary, ledger) =
        assert_secret_nowhere(&setup, &[("HOSTILE_ECHO_API_KEY", SECRET)], &[SECRET]).await;
    assert!(
        dest.requests()
            .iter()
            .all(|r| r.header("x-api-key") == Some(SECRET))
    );
    assert_eq!(
        (
            &summary["outcome"],
            &summary["rejected"],
            &summary["delivered"]
        ),
        (&json!("completed"), &json!(5), &json!(0))
    );
    // Five records refused as a whole each time: 1 + 2 + 2 + 2 + 2 requests (halves of
    // 2 and 3, then the singles), the same in both runs.
    assert_eq!(summary["requests"], json!(9));
    assert_eq!(dest.request_count(), 18);
    let failure = scrubbed_refusal();
    let expected: BTreeMap<String, Value> = (0..5)
        .map(|i| (format!("h{i:02}"), failure.clone()))
        .collect();
    assert_eq!(ledger_failures(&ledger), expected);
}

/// Echoed in a 401, the token ends up in the run's error (credentials refused after a
/// renewal): the run fails, its records pending, and the error is scrubbed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_token_in_a_refusal_of_credentials_is_kept_out_of_the_run_error() {
    let (dest, summary, ledger) = bearer_echoed_in(401, "HOSTILE_ECHO_401").await;
    assert_eq!(
        (
            &summary["outcome"],
            &summary["pending"],
            &summary["delivered"],
            &summary["requests"]
        ),
        (&json!("failed"), &json!(5), &json!(0), &json!(2)),
        "refused, renewed, refused again"
    );
    let error = summary["error"].as_str().unwrap();
    assert!(error.contains("DENIED [redacted]"), "{error}");
    assert_eq!(dest.request_count(), 4);
    assert!(
        ledger.iter().all(|e| e["status"] == "pending"),
        "{ledger:?}"
    );
    assert_eq!(ledger.len(), 5);
}

/// A `Basic` credential given as a header: the destination echoes the encoded value and
/// the decoded `user:password`. Neither, nor the password alone, reaches anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_echoed_basic_credential_and_its_password_reach_nothing() {
    let dest = destination(Misbehaviour::EchoCredential { status: 200 }, None).await;
    let pair = format!("ops:{SECRET}");
    let [_, encoded, _] = credential_forms(&pair);
    let setup = scenario(
        &dest,
        5,
        "auth = { header = \"Authorization\", value_env = \"HOSTILE_ECHO_BASIC\" }",
    )
    .setup();
    let value = format!("Basic {encoded}");
    let (summary, ledger) = assert_secret_nowhere(
        &setup,
        &[("HOSTILE_ECHO_BASIC", &value)],
        &[&encoded, &pair, SECRET],
    )
    .await;
    assert!(
        dest.requests()
            .iter()
            .all(|r| r.header("authorization") == Some(value.as_str()))
    );
    let text = String::from_utf8(dest.requests()[0].body.clone()).unwrap();
    assert!(text.contains("h00"), "{text}");
    assert_eq!(
        (
            &summary["outcome"],
            &summary["rejected"],
            &summary["delivered"]
        ),
        (&json!("completed"), &json!(5), &json!(0))
    );
    assert_eq!(ledger.len(), 5);
    for entry in &ledger {
        assert_eq!(
            (&entry["status"], &entry["code"]),
            (&json!("rejected"), &json!("DENIED [redacted]")),
            "{entry}"
        );
    }
}
