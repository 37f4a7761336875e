//! A hostile destination: it speaks the bundled REST connector's per-record protocol and
//! misbehaves on demand, the ways broken or careless APIs do, so that tests can hold the host
//! to what it promises (nothing silently lost, no secret leaked, no request storm).
//!
//! The protocol: `POST /v1/records` ([`PATH`]) with a bare JSON array of record objects, each
//! keyed by `id`; the answer is `200 {"results": [{"id": "h-<key>", "error": null}, ...]}`,
//! one result per record in order. Configure the REST connector with
//! `settings = { path = "/v1/records", results_pointer = "/results", id_field = "id" }`.
//!
//! [`Misbehaviour`] says what goes wrong, for the first `times` data requests or for all of
//! them, and can be switched while the server runs ([`HostileHandle::set`]). Every request is
//! recorded with its headers and body, and every record the destination accepted is stored,
//! so a test can assert exactly what arrived. It listens on loopback only, nothing in it
//! loops without a bound, and it never logs a header value.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::serve::{IncomingStream, Listener};
use base64::Engine as _;
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use crate::handle::Server;

mod answers;
mod reset;

use answers::{not_found, records};
use reset::{Conn, ResettableListener};

/// Where records are posted.
pub const PATH: &str = "/v1/records";

/// The response header an echoing destination copies the credential into.
pub const ECHO_HEADER: &str = "x-echo-credential";

/// Request bodies larger than this are refused with 413.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// What the destination does to a data request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Misbehaviour {
    /// Nothing: stores every record that has a key and answers one result per record.
    #[default]
    None,
    /// 429 with this `Retry-After` value (`"0"`, an HTTP-date in the past, a huge number),
    /// or with none. Nothing is stored.
    RateLimit { retry_after: Option<String> },
    /// Copies the value of the request's credential header (see
    /// [`HostileConfig::credential_header`]) into everything it answers: the error code,
    /// the message (also as base64 and percent-encoded, see [`credential_forms`], and for a
    /// `Basic` credential its decoded `user:password`), the field list, the [`ECHO_HEADER`]
    /// response header and the body. With `status` 200 the answer
    /// is one such error per record; with any other status it is a whole-batch error. Nothing
    /// is stored.
    EchoCredential { status: u16 },
    /// Stores the records and answers 200 with the correct results, after a `padding`-byte
    /// string field, so the body is far larger than a host should read.
    HugeBody { padding: usize },
    /// Stores the records, answers 200 with a `Content-Length` of the whole results body,
    /// sends its first half and closes the connection.
    TruncatedBody,
    /// Stores the records and sends the 200 headers at once, then the correct results body
    /// in `pieces` pieces, `interval` apart.
    SlowBody { interval: Duration, pieces: u32 },
    /// Reads the whole request, then resets the connection (TCP RST) without an answer.
    /// Nothing is stored.
    Reset,
    /// Answers `status` (a 3xx) with `Location: location`. Nothing is stored.
    Redirect { status: u16, location: String },
    /// Stores the records and answers 200 with `records + delta` results (at least none),
    /// each saying the record was stored.
    WrongLength { delta: i64 },
}

/// How to run a hostile destination.
#[derive(Debug, Clone)]
pub struct HostileConfig {
    pub misbehaviour: Misbehaviour,
    /// How many data requests misbehave before the destination behaves; `None`: all.
    pub times: Option<u64>,
    /// The request header whose value [`Misbehaviour::EchoCredential`] echoes (any case);
    /// default `authorization`.
    pub credential_header: String,
    /// The field inside each record that holds its key; default `id`.
    pub key_field: String,
    /// The loopback port to listen on; 0 picks a free one.
    pub port: u16,
}

impl HostileConfig {
    /// A destination that does `misbehaviour` for the first `times` data requests (`None`:
    /// all of them), otherwise as the default.
    pub fn doing(misbehaviour: Misbehaviour, times: Option<u64>) -> Self {
        HostileConfig {
            misbehaviour,
            times,
            ..HostileConfig::default()
        }
    }

    /// This destination, reading the credential from `header` (an API key's own header)
    /// rather than `Authorization`.
    pub fn with_credential_header(self, header: &str) -> Self {
        HostileConfig {
            credential_header: header.to_owned(),
            ..self
        }
    }
}

impl Default for HostileConfig {
    fn default() -> Self {
        HostileConfig {
            misbehaviour: Misbehaviour::None,
            times: None,
            credential_header: "authorization".to_owned(),
            key_field: "id".to_owned(),
            port: 0,
        }
    }
}

/// The labels of [`HostileRequest::answer`]: those the other simulators also give, and one
/// per misbehaviour.
pub mod answer {
    /// `OK`: processed normally, every record with a key stored. `BAD_REQUEST`: a body that
    /// is not a JSON array, or too large (400 or 413). `NOT_FOUND`: any path but
    /// [`super::PATH`] (404).
    pub use crate::outcome::{BAD_REQUEST, NOT_FOUND, OK, RATE_LIMITED};

    pub const ECHOED: &str = "echoed";
    pub const HUGE: &str = "huge";
    pub const TRUNCATED: &str = "truncated";
    pub const SLOW: &str = "slow";
    pub const RESET: &str = "reset";
    pub const REDIRECTED: &str = "redirected";
    pub const WRONG_LENGTH: &str = "wrong_length";
}

/// One request as the destination received it.
#[derive(Clone)]
pub struct HostileRequest {
    /// 0-based position in arrival order.
    pub seq: u64,
    /// When its body had been read, on the monotonic clock.
    pub arrived: Instant,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Every header, names in lower case, values as sent (lossy UTF-8).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The record keys in the body, in order (`""` for a record without a usable key);
    /// empty when the body is not a JSON array.
    pub keys: Vec<String>,
    /// What the destination did with it: one of [`answer`].
    pub answer: &'static str,
}

impl HostileRequest {
    /// The value of the first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

// Header values hold credentials: only their names are shown.
impl fmt::Debug for HostileRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HostileRequest")
            .field("seq", &self.seq)
            .field("method", &self.method)
            .field("path", &self.path)
            .field("header_names", &names)
            .field("body_bytes", &self.body.len())
            .field("keys", &self.keys)
            .field("answer", &self.answer)
            .finish()
    }
}

/// The forms in which [`Misbehaviour::EchoCredential`] repeats a credential: as sent, its
/// standard base64, and percent-encoded (every byte but ASCII letters and digits), so that a
/// test can look for each of them where they must not be.
pub fn credential_forms(credential: &str) -> [String; 3] {
    [
        credential.to_owned(),
        base64::engine::general_purpose::STANDARD.encode(credential),
        percent_encoding::utf8_percent_encode(credential, percent_encoding::NON_ALPHANUMERIC)
            .to_string(),
    ]
}

/// The credential in a header value: what follows an auth scheme (`Bearer xyz` gives `xyz`),
/// or the whole value when it has none (an API key).
fn credential_in(value: &str) -> &str {
    match value.trim().split_once(' ') {
        Some((scheme, rest)) if scheme.chars().all(|c| c.is_ascii_alphabetic()) => rest.trim(),
        _ => value.trim(),
    }
}

/// The `user:password` of a `Basic` credential, when it decodes to text.
fn basic_pair(value: &str) -> Option<String> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The id the destination gives a stored record.
pub fn record_id(key: &str) -> String {
    format!("h-{key}")
}

struct Inner {
    misbehaviour: Misbehaviour,
    /// Misbehaving requests left; `None`: no limit.
    remaining: Option<u64>,
    log: Vec<HostileRequest>,
    stored: BTreeMap<String, Value>,
}

struct Hostile {
    credential_header: String,
    key_field: String,
    inner: Mutex<Inner>,
}

impl Hostile {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running hostile destination; dropping it stops the server.
pub struct HostileHandle {
    server: Server,
    state: Arc<Hostile>,
}

impl HostileHandle {
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Switches what the destination does from the next request on: `misbehaviour` for
    /// `times` requests (`None`: all), then nothing.
    pub fn set(&self, misbehaviour: Misbehaviour, times: Option<u64>) {
        let mut inner = self.state.lock();
        inner.misbehaviour = misbehaviour;
        inner.remaining = times;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<HostileRequest> {
        self.state.lock().log.clone()
    }

    /// How many requests arrived, on any path.
    pub fn request_count(&self) -> usize {
        self.state.lock().log.len()
    }

    /// Every stored record by key, as last written.
    pub fn stored(&self) -> BTreeMap<String, Value> {
        self.state.lock().stored.clone()
    }

    /// Stops accepting connections and waits (a few seconds at most) for the server to end.
    pub async fn shutdown(self) {
        self.server.shutdown().await
    }
}

impl fmt::Debug for HostileHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HostileHandle")
            .field("addr", &self.addr())
            .finish_non_exhaustive()
    }
}

/// Starts a hostile destination on the current Tokio runtime.
pub async fn start(config: HostileConfig) -> anyhow::Result<HostileHandle> {
    if let Misbehaviour::Redirect { status, .. } = &config.misbehaviour
        && !(300..400).contains(status)
    {
        anyhow::bail!("a redirect's status must be a 3xx, not {status}");
    }
    HeaderName::try_from(config.credential_header.as_str())
        .with_context(|| format!("{:?} is not a header name", config.credential_header))?;
    let (tcp, addr) = Server::bind(config.port).await?;
    let state = Arc::new(Hostile {
        credential_header: config.credential_header.to_ascii_lowercase(),
        key_field: config.key_field,
        inner: Mutex::new(Inner {
            misbehaviour: config.misbehaviour,
            remaining: config.times,
            log: Vec::new(),
            stored: BTreeMap::new(),
        }),
    });
    let router = Router::new()
        .route(PATH, any(records))
        .fallback(not_found)
        .with_state(Arc::clone(&state));
    let listener = ResettableListener(tcp);
    let server = Server::spawn(addr, "hostile destination", |stopped| {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<Conn>(),
        )
        .with_graceful_shutdown(async {
            let _ = stopped.await;
        })
        .into_future()
    });
    Ok(HostileHandle { server, state })
}
