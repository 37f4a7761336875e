//! A run stopped early says which kind of cause stopped it, so a caller (`sluice serve`)
//! branches on a type instead of the error's text.

use sluice::engine::{Outcome, RunSummary, StopKind};

use crate::common::{self, Ran, Scenario, contacts};

/// 30 contacts through `component` with `settings`, in batches of 10 by two workers, to a
/// destination that accepts everything: the summary of a run that must have failed.
async fn run(component: &str, settings: &str) -> RunSummary {
    let dest = common::accepting().await;
    let Ran { report, .. } = Scenario::new(component, &dest.base_url())
        .records(contacts(30))
        .settings(settings)
        .batches(10, 2)
        .run()
        .await;
    let s = report.summary;
    assert_eq!(
        (s.outcome, s.delivered),
        (Outcome::Failed, 0),
        "{:?}",
        s.error
    );
    s
}

async fn hostile(settings: &str) -> RunSummary {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hostile.wasm");
    std::fs::write(&path, common::guest("test_hostile")).unwrap();
    run(&path.display().to_string(), settings).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_verdict_is_told_apart_from_a_trap() {
    let s = run("builtin:rest", "{ path = \"/v1/nowhere\" }").await;
    assert_eq!(s.stopped_by, Some(StopKind::FatalVerdict));
    let error = s.error.unwrap();
    assert!(
        error.starts_with("the destination failed fatally: HTTP_404"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_classify_stops_as_a_guest_failure() {
    let s = hostile("{ mode = \"trap\", phase = \"classify\" }").await;
    assert_eq!(s.stopped_by, Some(StopKind::Guest));
    let error = s.error.unwrap();
    assert!(error.contains("trapped in `classify`"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_host_refuses_stops_as_host_refused() {
    let s = hostile("{ mode = \"forbidden-host\" }").await;
    assert_eq!(s.stopped_by, Some(StopKind::HostRefused));
}
