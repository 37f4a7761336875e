//! The operators' console, served by `sluice serve --console-addr`: what failed and why,
//! and acting on it. This is its JSON API under `/api/v1/` (docs/console.md); every
//! request needs a token (`auth.rs`), and acting needs the operator's.
//!
//! The console reads the ledger, the run history and the inspector that the process's
//! `Host` holds, and acts through the same paths as the CLI: a retry is `Host::retry`
//! (`sluice retry --key`), a resolution is `SyncLedger::resolve` (`sluice ledger resolve`).

mod actions;
mod api;
pub mod auth;
mod pages;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::sync::Host;

pub use auth::{Role, Tokens};

/// What the console's handlers share.
pub struct Console {
    host: Arc<Host>,
    config: Arc<Config>,
    tokens: Tokens,
    sessions: auth::Sessions,
    /// Stops what the console started (a retry) when the process stops.
    stop: CancellationToken,
}

impl Console {
    /// The console of `host` for `config`; refused when `[console]` is missing or a token
    /// is not in the environment.
    pub fn new(host: Arc<Host>, config: Arc<Config>, stop: CancellationToken) -> Result<Console> {
        let console = config.console.as_ref().context(
            "--console-addr needs a [console] table naming the token's variable: \
             [console] token_env = \"SLUICE_CONSOLE_TOKEN\"",
        )?;
        let tokens = Tokens::from_env(console)?;
        Ok(Console {
            host,
            config,
            tokens,
            sessions: auth::Sessions::default(),
            stop,
        })
    }

    /// Serves the console on `addr` until `stop`; the address it listens on.
    pub async fn serve(self, addr: SocketAddr) -> Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("serving the console on {addr}"))?;
        let bound = listener.local_addr()?;
        let stop = self.stop.clone();
        let console = Arc::new(self);
        let app = api::routes().merge(pages::routes()).with_state(console);
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(err) = served {
                tracing::error!("the console stopped: {err}");
            }
        });
        Ok(bound)
    }
}
