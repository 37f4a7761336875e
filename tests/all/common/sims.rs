//! One way to start each simulated destination for a test.

use sluice_sim::SimHandle;
use sluice_sim::faults::Faults;
use sluice_sim::rest::{self, RestConfig, RestMode};

/// The REST simulator answering in `mode`, with `faults`.
pub async fn rest_sim(mode: RestMode, faults: Faults) -> SimHandle {
    rest::start(RestConfig {
        mode,
        faults,
        ..RestConfig::default()
    })
    .await
    .unwrap()
}

/// The REST simulator storing every record it is sent, without faults.
pub async fn accepting() -> SimHandle {
    rest_sim(RestMode::AcceptAll, Faults::default()).await
}

/// The REST simulator answering per record, rejecting a record whose `email` is not an
/// email address.
pub async fn checking_emails() -> SimHandle {
    checking_emails_with(RestConfig::default()).await
}

/// [`checking_emails`], otherwise configured as `config` (faults, credentials).
pub async fn checking_emails_with(config: RestConfig) -> SimHandle {
    rest::start(RestConfig {
        mode: RestMode::PerRecord,
        rules: sluice_sim::validation::Rules {
            emails: vec!["email".into()],
            ..Default::default()
        },
        ..config
    })
    .await
    .unwrap()
}

/// A loopback address nothing listens on.
pub async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}
