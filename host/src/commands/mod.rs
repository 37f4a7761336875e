//! The implementations of the `sluice` subcommands.

pub mod connector;
pub mod inspect;
pub mod ledger;
pub mod progress;
pub mod retry;
pub mod run;
pub mod serve;

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How long requests in flight may finish after Ctrl-C or SIGTERM.
pub const GRACE: Duration = Duration::from_secs(10);

/// A token cancelled on SIGINT or SIGTERM: runs stop taking work, settle and exit. A
/// second signal quits at once; nothing is lost, since unconfirmed records were never
/// marked delivered and a later run sends them again.
pub fn stop_on_signals() -> CancellationToken {
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            eprintln!("stopping: finishing requests in flight (Ctrl-C again to quit at once)");
            token.cancel();
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            token.cancel();
            let _ = tokio::signal::ctrl_c().await;
        }
        std::process::exit(130);
    });
    stop
}
