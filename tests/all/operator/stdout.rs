//! A standard output that goes away or fills up: the output ends quietly or is an error
//! naming it, and every sync still runs.

use super::*;

/// What the read-only commands print, as arguments.
const READERS: [&[&str]; 10] = [
    &["ledger", "list", "--help"],
    &["ledger", "list", "--sync", "first"],
    &["ledger", "list", "--sync", "first", "--csv"],
    &["ledger", "list", "--sync", "first", "--json"],
    &["ledger", "stats", "--sync", "first"],
    &["ledger", "show", "--sync", "first", "a00000"],
    &["runs"],
    &["inspect", "--sync", "first"],
    &["plan"],
    &["plan", "--json"],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_closes_the_pipe_ends_the_output_quietly_and_every_sync_still_runs() {
    let (dest, _dir, config) = two_syncs(30).await;
    // The reader is gone before the first report: every write finds the pipe closed.
    for args in [&["run"][..], &["run", "--json"]] {
        let (code, stderr) = sluice_to(args, &config, Stdout::Closed).await;
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
    }
    assert_eq!(dest.stored().len(), 60, "both syncs delivered");
    let completed = |sync: &str| (sync.to_string(), "completed".to_string());
    assert_eq!(
        runs(&config).await,
        [
            completed("first"),
            completed("second"),
            completed("first"),
            completed("second")
        ]
    );
    for args in READERS {
        let (code, stderr) = sluice_to(args, &config, Stdout::Closed).await;
        assert_eq!(code, Some(0), "{args:?}: {stderr}");
    }
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stdout_is_an_error_naming_it_and_every_sync_still_runs() {
    let (dest, _dir, config) = two_syncs(30).await;
    let (code, stderr) = sluice_to(&["run", "--json"], &config, Stdout::Full).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "error: cannot write to stdout: the device is full (no space left on device)"
        ),
        "{stderr}"
    );
    assert_eq!(dest.stored().len(), 60, "both syncs delivered");
    assert_eq!(
        runs(&config).await,
        [
            ("first".to_string(), "completed".to_string()),
            ("second".to_string(), "completed".to_string())
        ]
    );
    for args in READERS {
        let (code, stderr) = sluice_to(args, &config, Stdout::Full).await;
        assert_eq!(code, Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("cannot write to stdout"),
            "{args:?}: {stderr}"
        );
    }
}
