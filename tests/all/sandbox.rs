//! The sandbox holds against connectors that misbehave: the host survives each and
//! reports it by name.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice::sandbox::{
    ConnectorInstance, GuestErrorKind, HttpResponse, Runtime, SandboxLimits, SourceRecord,
};

use crate::common;

const LIMITS: SandboxLimits = SandboxLimits {
    memory: 16 * 1024 * 1024,
    call_timeout: Duration::from_millis(200),
};

fn hostile(runtime: &Runtime, mode: &str, phase: &str) -> ConnectorInstance {
    let connector = runtime
        .load("hostile", &common::guest("test_hostile"), LIMITS)
        .expect("the hostile component loads");
    let mut instance = connector.instantiate("test").expect("instantiates");
    if phase != "configure" {
        instance
            .configure(&settings(mode, phase))
            .expect("configure runs")
            .expect("configure accepts the settings");
    }
    instance
}

fn settings(mode: &str, phase: &str) -> Vec<(String, String)> {
    vec![("mode".into(), mode.into()), ("phase".into(), phase.into())]
}

fn batch() -> Vec<SourceRecord> {
    (0..3)
        .map(|i| SourceRecord::new(format!("k{i}"), format!(r#"{{"id": "k{i}"}}"#)))
        .collect()
}

fn ok_response() -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: vec![],
        body: b"{}".to_vec(),
        truncated: false,
        received_at_ms: 0,
    }
}

/// Runs the call named `phase` and returns its error.
fn fail_in(
    instance: &mut ConnectorInstance,
    mode: &str,
    phase: &str,
) -> sluice::sandbox::GuestError {
    let keys: Vec<String> = batch().into_iter().map(|r| r.key).collect();
    match phase {
        "configure" => instance.configure(&settings(mode, phase)).map(|_| ()),
        "precheck" => instance.precheck(&batch()).map(|_| ()),
        "build-request" => instance
            .build_request(&batch(), "sluice-test-key")
            .map(|_| ()),
        "classify" => instance
            .classify(&keys, sluice::sandbox::Operation::Upsert, &ok_response())
            .map(|_| ()),
        _ => unreachable!(),
    }
    .expect_err("the call must fail")
}

const PHASES: [&str; 4] = ["configure", "precheck", "build-request", "classify"];

#[test]
fn an_endless_loop_is_stopped_at_the_call_time_limit_in_every_call() {
    let runtime = common::runtime();
    for phase in PHASES {
        let mut instance = hostile(&runtime, "loop", phase);
        let started = Instant::now();
        let err = fail_in(&mut instance, "loop", phase);
        let took = started.elapsed();
        assert_eq!(err.kind, GuestErrorKind::Timeout, "{phase}: {err}");
        assert_eq!(err.call, phase);
        assert!(
            took >= Duration::from_millis(200),
            "{phase}: stopped early, after {took:?}"
        );
        assert!(took < Duration::from_secs(2), "{phase}: took {took:?}");
        let message = err.to_string();
        assert!(
            message.contains("connector `hostile`") && message.contains(phase),
            "{message}"
        );
        assert!(message.contains("200ms"), "{message}");
        // A failed instance is never called again.
        let again = instance.precheck(&batch()).unwrap_err();
        assert_eq!(again.kind, GuestErrorKind::Unusable);
    }
}

/// How a fresh instance in `mode` fails in each phase, by phase.
fn failures(mode: &str) -> Vec<(&'static str, sluice::sandbox::GuestError)> {
    let runtime = common::runtime();
    PHASES
        .into_iter()
        .map(|phase| {
            (
                phase,
                fail_in(&mut hostile(&runtime, mode, phase), mode, phase),
            )
        })
        .collect()
}

#[test]
fn a_memory_bomb_hits_the_memory_limit_in_every_call() {
    for (phase, err) in failures("memory-bomb") {
        assert_eq!(err.kind, GuestErrorKind::MemoryLimit, "{phase}: {err}");
        assert!(
            err.to_string().contains("memory limit of 16.0 MiB"),
            "{err}"
        );
    }
}

#[test]
fn a_trap_is_reported_with_the_connector_and_the_call() {
    for (phase, err) in failures("trap") {
        assert!(
            matches!(err.kind, GuestErrorKind::Trap(_)),
            "{phase}: {err}"
        );
        assert!(
            err.to_string()
                .starts_with(&format!("connector `hostile` trapped in `{phase}`")),
            "{err}"
        );
    }
}

#[test]
fn outcome_lists_of_the_wrong_length_break_the_contract() {
    let runtime = common::runtime();
    let mut instance = hostile(&runtime, "wrong-length", "build-request");
    let err = instance.precheck(&batch()).unwrap_err();
    assert_eq!(
        err.kind,
        GuestErrorKind::Contract("returned 4 outcomes for a batch of 3 records".into())
    );
    let mut instance = hostile(&runtime, "wrong-length", "build-request");
    let keys: Vec<String> = batch().into_iter().map(|r| r.key).collect();
    let err = instance
        .classify(&keys, sluice::sandbox::Operation::Upsert, &ok_response())
        .unwrap_err();
    assert_eq!(
        err.kind,
        GuestErrorKind::Contract("returned 4 per-record outcomes for a batch of 3 records".into())
    );
}

#[test]
fn the_host_goes_on_after_every_failure() {
    let runtime = common::runtime();
    for mode in ["loop", "memory-bomb", "trap"] {
        let mut bad = hostile(&runtime, mode, "precheck");
        assert!(bad.precheck(&batch()).is_err());
    }
    // The same component, well configured, in the same runtime, still works.
    let mut good = hostile(&runtime, "ok", "precheck");
    assert_eq!(good.precheck(&batch()).unwrap().len(), 3);
    let request = good
        .build_request(&batch(), "sluice-test-key")
        .unwrap()
        .unwrap();
    assert_eq!(request.url, "/hostile");
}

#[test]
fn guest_output_and_log_calls_reach_the_log_tagged_with_the_connector() {
    let runtime = common::runtime();
    let connector = runtime
        .load("chatterbox", &common::guest("test_hostile"), LIMITS)
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
    let writer = {
        let logs = logs.clone();
        move || common::SharedWriter(logs.clone())
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let mut instance = connector.instantiate("accounts").unwrap();
        instance
            .configure(&settings("chatty", "build-request"))
            .unwrap()
            .unwrap();
        instance.precheck(&batch()).unwrap();
        drop(instance);
    });
    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    assert!(text.contains("hello from hostile"), "{text}");
    assert!(text.contains("connector=\"chatterbox/accounts\""), "{text}");
    assert!(text.contains("stream=\"stdout\""), "{text}");
    assert!(text.contains("stream=\"stderr\""), "{text}");
}

#[test]
fn compiled_components_are_cached_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = common::guest("test_hostile");
    let first = Runtime::new(Some(dir.path().to_path_buf())).unwrap();
    first.load("a", &wasm, LIMITS).unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().unwrap(), "cwasm");
    let written = std::fs::metadata(&files[0]).unwrap().modified().unwrap();

    // A new runtime (a new process) loads the cached artifact instead of compiling.
    let second = Runtime::new(Some(dir.path().to_path_buf())).unwrap();
    let connector = second.load("b", &wasm, LIMITS).unwrap();
    assert!(connector.instantiate("").is_ok());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().modified().unwrap(),
        written
    );

    // A corrupt cache entry is recompiled, not trusted.
    std::fs::write(&files[0], b"garbage").unwrap();
    let third = Runtime::new(Some(dir.path().to_path_buf())).unwrap();
    let connector = third.load("c", &wasm, LIMITS).unwrap();
    assert!(connector.instantiate("").is_ok());
    assert!(std::fs::metadata(&files[0]).unwrap().len() > 1000);

    // Another component gets its own entry.
    third.load("d", &common::guest("rest"), LIMITS).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn something_that_is_not_a_connector_is_refused_clearly() {
    let runtime = common::runtime();
    let err = runtime
        .load("junk", b"not wasm at all", LIMITS)
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("connector `junk` is not a valid WebAssembly component"),
        "{err:#}"
    );
    // A core module, not a component.
    let module = b"\0asm\x01\0\0\0";
    let err = runtime.load("core", module, LIMITS).err().unwrap();
    assert!(format!("{err:#}").contains("connector `core`"), "{err:#}");
}
