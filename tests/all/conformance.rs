//! The conformance check (`sluice connector check`): every bundled connector and both
//! example connectors in other languages pass it; broken components fail it, each
//! violation reported by name.

use std::time::Duration;

use sluice::conformance::{self, Options, Report, Status, Violation};
use sluice::sandbox::SandboxLimits;

use crate::common;

fn options() -> Options {
    Options {
        cache_dir: Some(common::cache_dir()),
        limits: SandboxLimits {
            memory: 64 * 1024 * 1024,
            call_timeout: Duration::from_secs(1),
        },
        ..Options::default()
    }
}

fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn check(wasm: &[u8], pairs: &[(&str, &str)]) -> Report {
    conformance::check_with(wasm, &settings(pairs), &options())
}

fn assert_conformant(name: &str, report: &Report, version: &str) {
    assert!(report.conformant(), "{name} is not conformant:\n{report}");
    assert_eq!(report.version.as_deref(), Some(version));
    // Every canned response was classified, for each operation the connector claims.
    let classified = report
        .steps
        .iter()
        .filter(|s| s.name.starts_with("classify") && s.status != Status::Skipped)
        .count();
    assert_eq!(classified, 11 * report.operations.len(), "{report}");
}

/// The one step of `report` named `name`.
fn step<'a>(report: &'a Report, name: &str) -> &'a conformance::Step {
    report
        .steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}:\n{report}"))
}

#[test]
fn the_bundled_connectors_are_conformant() {
    let salesforce = check(
        &common::guest("salesforce"),
        &[
            ("object", "Account"),
            ("external_id_field", "External_Id__c"),
        ],
    );
    assert_conformant("salesforce", &salesforce, "0.2.0");
    assert_eq!(salesforce.limits, Some((200, 6_000_000)));
    assert_eq!(salesforce.operations.len(), 4, "{salesforce}");
    assert_eq!(salesforce.warnings(), 0, "{salesforce}");
    assert!(
        step(&salesforce, "classify (upsert): 429 with Retry-After: 30")
            .detail
            .starts_with("rate-limited(after 30000 ms)"),
        "{salesforce}"
    );
    let text = salesforce.to_string();
    assert!(
        text.contains("conformant: implements sluice:connector/destination@0.2.0"),
        "{text}"
    );
    assert!(text.contains("PATCH https://destination.example/services/data/v60.0/composite/sobjects/Account/External_Id__c"), "{text}");
    assert!(text.contains("DELETE https://destination.example/services/data/v60.0/composite/sobjects?ids=001CHECK0000000001,001CHECK0000000002,001CHECK0000000003&allOrNone=false"), "{text}");

    let rest = check(
        &common::guest("rest"),
        &[
            ("path", "/v1/records"),
            ("results_pointer", "/results"),
            ("id_field", "id"),
        ],
    );
    assert_conformant("rest", &rest, "0.2.0");
    assert_eq!(rest.warnings(), 0, "{rest}");
    assert_eq!(
        step(&rest, "classify: 200 with an object of per-record results").detail,
        "per-record[delivered(check1@example.com), delivered(check2@example.com), delivered(check3@example.com)]"
    );
    assert_eq!(
        step(&rest, "classify: 200 with a body of 10 MiB")
            .detail
            .split(" (in")
            .next(),
        Some("transient(MALFORMED_RESPONSE)")
    );
}

#[test]
fn the_python_and_javascript_examples_are_conformant() {
    let python = std::fs::read(crate::polyglot::component("python-hubspot")).unwrap();
    let report = check(&python, &[]);
    assert_conformant("python-hubspot", &report, "0.1.0");
    assert_eq!(report.warnings(), 0, "{report}");
    let js = std::fs::read(crate::polyglot::component("js-couchdb")).unwrap();
    let report = check(&js, &[("db", "crm")]);
    assert_conformant("js-couchdb", &report, "0.1.0");
    assert_eq!(report.warnings(), 0, "{report}");
}

#[test]
fn settings_that_are_refused_are_reported() {
    let report = check(&common::guest("salesforce"), &[("object", "Account")]);
    assert!(!report.conformant());
    assert_eq!(report.violations(), [Violation::ConfigureRefused]);
    let text = report.to_string();
    assert!(
        text.contains("external_id_field") && text.contains("configure-refused"),
        "{text}"
    );
    assert!(text.contains("--settings"), "{text}");
}

/// The hostile test component, misbehaving as `mode` says in `phase`.
fn hostile(mode: &str, phase: &str) -> Report {
    let options = Options {
        limits: SandboxLimits {
            memory: 16 * 1024 * 1024,
            // Long enough that a well-behaved call never reaches it on a loaded machine
            // (200 ms did, under parallel builds); the looping cases wait it out.
            call_timeout: Duration::from_secs(1),
        },
        ..options()
    };
    conformance::check_with(
        &common::guest("test_hostile"),
        &settings(&[("mode", mode), ("phase", phase)]),
        &options,
    )
}

#[test]
fn each_broken_behaviour_is_reported_by_name() {
    #[rustfmt::skip]
    let cases = [
        ("loop", "build-request", Violation::Timeout, "build-request"),
        ("loop", "classify", Violation::Timeout, "classify: 401"),
        ("memory-bomb", "precheck", Violation::MemoryLimit, "precheck"),
        ("trap", "classify", Violation::Trap, "classify: 500"),
        ("trap", "configure", Violation::Trap, "configure"),
        ("forbidden-host", "build-request", Violation::ForbiddenHost, "build-request"),
        ("wrong-length", "build-request", Violation::WrongLength, "precheck"),
    ];
    for (mode, phase, violation, step_name) in cases {
        let report = hostile(mode, phase);
        let text = report.to_string();
        assert!(!report.conformant(), "{mode}/{phase}:\n{text}");
        assert_eq!(report.violations(), [violation], "{mode}/{phase}:\n{text}");
        assert_eq!(
            step(&report, step_name).status,
            Status::Violation(violation),
            "{mode}/{phase}:\n{text}"
        );
        assert!(
            text.contains(&format!("NOT conformant: {}", violation.name())),
            "{text}"
        );
        assert!(text.contains(violation.advice()), "{text}");
    }
    // A connector that misbehaves in one call is checked on in the next, with a fresh
    // instance: a trap in classify is reported for every response.
    let report = hostile("trap", "classify");
    let traps = report
        .steps
        .iter()
        .filter(|s| s.status == Status::Violation(Violation::Trap))
        .count();
    assert_eq!(traps, 11, "{report}");
    // A wrong length in precheck and in classify are both reported.
    let report = hostile("wrong-length", "build-request");
    assert!(
        report
            .steps
            .iter()
            .any(|s| s.name.starts_with("classify: 200")
                && s.status == Status::Violation(Violation::WrongLength)),
        "{report}"
    );
    // Behaving, it is conformant, with warnings: it reads no status but 2xx.
    let report = hostile("ok", "build-request");
    assert!(report.conformant(), "{report}");
    assert_eq!(
        step(&report, "configure (an unknown setting)").status,
        Status::Ok
    );
    assert_eq!(
        step(&report, "classify: 401").status,
        Status::Warning,
        "{report}"
    );
}

/// `wasm` with every occurrence of `from` replaced by `to` (of the same length).
fn patched(wasm: &[u8], from: &str, to: &str) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let (from, to) = (from.as_bytes(), to.as_bytes());
    let mut out = wasm.to_vec();
    let mut found = 0;
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
            found += 1;
            i += from.len();
        } else {
            i += 1;
        }
    }
    assert!(
        found > 0,
        "{:?} is not in the component",
        String::from_utf8_lossy(from)
    );
    out
}

#[test]
fn components_that_cannot_load_are_reported_by_name() {
    let ok = common::guest("test_hostile");
    let ok_settings: &[(&str, &str)] = &[("mode", "ok")];
    let cases = [
        (
            b"this is not WebAssembly".to_vec(),
            Violation::NotAComponent,
            "load",
        ),
        // Built against a version of the world this host does not know.
        (
            patched(
                &ok,
                "sluice:connector/destination@0.1.0",
                "sluice:connector/destination@9.9.9",
            ),
            Violation::WorldVersion,
            "world",
        ),
        // Exports something else.
        (
            patched(
                &ok,
                "sluice:connector/destination@",
                "sluice:connector/destinatiox@",
            ),
            Violation::World,
            "world",
        ),
        // Imports an interface the sandbox does not provide.
        (
            patched(
                &ok,
                "sluice:connector/host@0.1.0",
                "sluice:connector/hosx@0.1.0",
            ),
            Violation::Imports,
            "imports",
        ),
    ];
    for (wasm, violation, step_name) in cases {
        let report = check(&wasm, ok_settings);
        let text = report.to_string();
        assert_eq!(report.violations(), [violation], "{text}");
        assert_eq!(
            step(&report, step_name).status,
            Status::Violation(violation),
            "{text}"
        );
    }
    let report = check(
        &patched(
            &ok,
            "sluice:connector/destination@0.1.0",
            "sluice:connector/destination@9.9.9",
        ),
        ok_settings,
    );
    assert!(
        report.to_string().contains(
            "built against sluice:connector@9.9.9, and this Sluice supports 0.2.0, 0.1.0"
        ),
        "{report}"
    );
    // A request URL that is neither a path nor an http(s) URL is a malformed request.
    let report = check(&patched(&ok, "/hostile", "ftp://hx"), ok_settings);
    assert_eq!(
        report.violations(),
        [Violation::MalformedRequest],
        "{report}"
    );
    assert!(report.to_string().contains("ftp://hx"), "{report}");
}

/// A connector that refuses the records it is given never has its request checked: that
/// is "not checked", never "conformant". `--records` with records it takes checks it.
#[tokio::test]
async fn records_the_connector_refuses_leave_it_not_checked_and_records_it_takes_check_it() {
    let refused = Options {
        records: Some(vec![
            sluice::sandbox::SourceRecord::new("a".into(), "[1, 2]".into()),
            sluice::sandbox::SourceRecord::new("b".into(), "\"text\"".into()),
        ]),
        ..options()
    };
    let report = conformance::check_with(
        &common::guest("rest"),
        &settings(&[("path", "/v1/records")]),
        &refused,
    );
    assert!(!report.conformant(), "{report}");
    assert_eq!(report.violations(), []);
    assert_eq!(step(&report, "build-request").status, Status::NotChecked);
    assert!(
        report
            .to_string()
            .contains("NOT checked: build-request never ran"),
        "{report}"
    );

    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.jsonl");
    std::fs::write(&good, "{\"email\": \"a@x.io\", \"n\": 1}\n{\"email\": 7}\n").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args([
            "connector",
            "check",
            "builtin:rest",
            "--settings",
            "path=/v1/records",
        ])
        .args(["--settings", "delete_path=/v1/gone", "--records"])
        .arg(&good)
        .args(["--key", "email"])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("precheck (delete)") && text.contains("2 records: 2 to send"),
        "{text}"
    );
    assert!(
        text.contains("POST https://destination.example/v1/gone"),
        "{text}"
    );

    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "nope\n").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["connector", "check", "builtin:rest", "--records"])
        .arg(&garbage)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(err.contains("line 1: not JSON"), "{err}");

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"email\": \"a@x.io\"}\n{\"name\": \"no key\"}\n").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["connector", "check", "builtin:rest", "--records"])
        .arg(&bad)
        .args(["--key", "email"])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(err.contains("line 2: no usable key field `email`"), "{err}");
}
