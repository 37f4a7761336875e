//! A running simulator, and what it lets a test inspect.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use axum::Router;
use axum::serve::ListenerExt;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::state::Shared;
use crate::store;

/// How long `shutdown` lets in-flight requests finish before it cuts them off.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// One request as the simulator saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// 0-based position in arrival order; equal to the record's index in
    /// [`SimHandle::requests`].
    pub seq: u64,
    /// When the request arrived, on the wall clock (comparable with
    /// [`Announcement::not_before`]).
    pub arrived_at: SystemTime,
    /// When the request arrived, on the monotonic clock.
    pub arrived: Instant,
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query, without the `?`, when there is one (a Salesforce delete names its ids
    /// there).
    pub query: Option<String>,
    /// The response status; 0 while the request is still being handled.
    pub status: u16,
    /// The record keys in the request body, in order; `""` for a record without a usable
    /// key. For an update or a delete by id, the key of the stored record each id names, or
    /// the id as sent when it names none. Empty when the body could not be parsed, for requests that carry no records,
    /// and for every request of a REST simulator started with `record_keys: false`.
    pub keys: Vec<String>,
    /// The `Authorization` header as sent, so tests can check the host sends it. Never
    /// logged by the simulator.
    pub authorization: Option<String>,
    /// The request's idempotency key header (`Idempotency-Key` unless the simulator was
    /// told another name), as sent.
    pub idempotency_key: Option<String>,
    /// A short label for what happened:
    ///
    /// - `ok`: processed, every record stored;
    /// - `partial`: processed, some records refused (200 with per-record errors);
    /// - `batch_rejected`: the whole batch refused because of its records (400), nothing
    ///   stored;
    /// - `conflict`: a whole batch refused because a row was locked (409), nothing stored;
    /// - `rate_limited`: refused by the rate limit (429, 403 or 503);
    /// - `session_expired`: refused for missing, unknown or expired credentials (401);
    /// - `server_error`: an injected error burst (5xx);
    /// - `bad_request`: a body that could not be read or parsed (400, 413);
    /// - `token_issued`, `token_refused`: the OAuth token endpoint;
    /// - `not_found`, `method_not_allowed`: no such endpoint;
    /// - `replayed`: answered with the stored response of an idempotency key seen before,
    ///   nothing applied;
    /// - `pending`: still being handled.
    pub outcome: String,
}

/// A rate-limit refusal: when it was sent, and the earliest time it told the client it may
/// come back (the refusal time itself when it sent no `Retry-After`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    pub sent_at: SystemTime,
    pub sent: Instant,
    pub not_before: SystemTime,
}

/// Counters over everything a simulator has handled.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Every request, whatever its path or outcome (token requests included).
    pub requests: u64,
    /// Records in the bodies of all data requests whose body parsed, including requests
    /// that were then refused (rate limit, credentials, error burst, a rejected batch).
    pub records_received: u64,
    /// Distinct keys stored.
    pub records_stored: u64,
    /// Responses by HTTP status.
    pub by_status: BTreeMap<u16, u64>,
    /// Requests refused by the rate limit.
    pub rate_limited: u64,
    /// Requests refused with 401, for missing, unknown or expired tokens alike.
    pub session_expired: u64,
    /// Requests failed by an error burst.
    pub server_errors: u64,
    /// Whole batches refused because of their records (outcome `batch_rejected`).
    pub batch_rejections: u64,
    /// Records the simulator found at fault, by error code (row locks included; records
    /// rolled back only because another record of an all-or-none request failed are not).
    pub record_errors: BTreeMap<String, u64>,
    /// Access tokens issued by the OAuth token endpoint.
    pub token_refreshes: u64,
    /// Data requests by the operation the simulator took them for: `upsert`, `insert`,
    /// `update` or `delete` (Salesforce and REST simulators), counted whatever their outcome.
    pub by_operation: BTreeMap<String, u64>,
    /// Records removed by deletes.
    pub records_deleted: u64,
    /// Requests answered with the stored response of an idempotency key seen before.
    pub replays: u64,
}

/// A server task on loopback, the part every simulator's handle shares: its address, and
/// the way to stop it. Dropping it stops the server.
pub(crate) struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `127.0.0.1:port` (0: any free port): the listener and its address.
    pub(crate) async fn bind(port: u16) -> anyhow::Result<(TcpListener, SocketAddr)> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
        let addr = listener
            .local_addr()
            .context("cannot read the listening address")?;
        Ok((listener, addr))
    }

    /// Runs the server `serve` makes (given the signal to stop on) as a task; `what` names
    /// it in the log.
    pub(crate) fn spawn<F>(
        addr: SocketAddr,
        what: &'static str,
        serve: impl FnOnce(oneshot::Receiver<()>) -> F,
    ) -> Server
    where
        F: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let served = serve(stopped);
        let task = tokio::spawn(async move {
            if let Err(error) = served.await {
                tracing::warn!(%addr, %error, "{what} stopped with an error");
            }
        });
        tracing::debug!(%addr, "{what} listening");
        Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits (a few seconds at most) for requests in
    /// flight to finish.
    pub(crate) async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A running simulator; dropping it (or calling [`SimHandle::shutdown`]) stops the server.
pub struct SimHandle {
    server: Server,
    shared: Arc<Shared>,
}

impl SimHandle {
    /// The loopback address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests()
    }

    /// Every stored record by key, as last written. This parses every record: for a
    /// large store prefer [`SimHandle::stats`] (`records_stored`) or
    /// [`SimHandle::stored_record`].
    pub fn stored(&self) -> BTreeMap<String, serde_json::Value> {
        let texts = self.shared.lock().store.texts();
        store::snapshot(texts)
    }

    /// The stored record with this key, as last written.
    pub fn stored_record(&self, key: &str) -> Option<serde_json::Value> {
        let text = self.shared.lock().store.text(key)?;
        Some(store::parse(&text))
    }

    /// The id the simulator gave the stored record with this key, if it gave one (the
    /// accept-all REST mode gives none).
    pub fn destination_id(&self, key: &str) -> Option<String> {
        self.shared.lock().store.id_of(key).map(str::to_owned)
    }

    /// The idempotency key of every request so far (see [`RequestRecord::idempotency_key`]),
    /// in arrival order, `None` for a request without one.
    pub fn idempotency_keys(&self) -> Vec<Option<String>> {
        let requests = self.shared.requests();
        requests.into_iter().map(|r| r.idempotency_key).collect()
    }

    /// How many requests came with each HTTP method, whatever their path or outcome.
    pub fn requests_by_method(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for r in self.shared.requests() {
            *counts.entry(r.method).or_default() += 1;
        }
        counts
    }

    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Every rate-limit refusal so far, in order.
    pub fn rate_limit_announcements(&self) -> Vec<Announcement> {
        self.shared.announcements()
    }

    /// Stops accepting connections and waits (a few seconds at most) for requests in
    /// flight to finish.
    pub async fn shutdown(self) {
        self.server.shutdown().await
    }
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

/// Binds `127.0.0.1:port` (0: any free port) and serves `router` on the current Tokio
/// runtime until the handle is dropped.
pub(crate) async fn spawn(
    port: u16,
    shared: Arc<Shared>,
    router: Router,
) -> anyhow::Result<SimHandle> {
    let (listener, addr) = Server::bind(port).await?;
    // Small responses must not wait for Nagle's algorithm: it would add tens of
    // milliseconds to every request of a benchmark.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    let server = Server::spawn(addr, "simulated destination", |stopped| {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future()
    });
    Ok(SimHandle { server, shared })
}
