//! The state one running simulator shares between its request handlers, and the gate
//! every data request passes before its body is looked at: authentication, the rate
//! limit and error bursts, in that order.
//!
//! One mutex guards it all. Handlers take it briefly and never across an `.await`, which
//! keeps the decisions (sequence numbers, window budgets, burst ordinals) in one total
//! order that matches arrival order.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Instant, SystemTime};

use anyhow::{Context, bail};
use axum::http::{HeaderMap, HeaderName, Uri};

use crate::auth::{AuthConfig, AuthFailure, Grant, Tokens};
use crate::faults::{Faults, LimitDecision, LimitStyle, Limiter};
use crate::handle::{Announcement, RequestRecord, Stats};
use crate::outcome;
use crate::store::Store;
use crate::validation::Rules;

/// Configuration and state of one simulator. (No `Debug`: it holds tokens.)
pub(crate) struct Shared {
    pub(crate) faults: Faults,
    pub(crate) rules: Rules,
    pub(crate) auth: Option<AuthConfig>,
    /// Whether request records list the keys of their records (off for benchmarks).
    record_keys: bool,
    /// The header request records take their idempotency key from.
    idempotency_header: HeaderName,
    inner: Mutex<Inner>,
}

pub(crate) struct Inner {
    log: Vec<RequestRecord>,
    stats: Stats,
    announcements: Vec<Announcement>,
    pub(crate) store: Store,
    limiter: Option<Limiter>,
    tokens: Tokens,
    /// Data requests so far, for `Latency`.
    data_arrivals: u64,
    /// Data requests that passed authentication and the rate limit, for `ErrorBurst`.
    admitted: u64,
    /// How many times each key has been seen, for row locks (kept only when locks are on).
    seen: HashMap<String, u64>,
}

/// A request that has been logged and numbered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Arrival {
    pub(crate) seq: u64,
    /// The 0-based ordinal among data requests; `None` for others (the token endpoint,
    /// unknown paths).
    data_ordinal: Option<u64>,
}

/// Why a data request was turned away before its body was processed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    Unauthorized(AuthFailure),
    RateLimited {
        style: LimitStyle,
        retry_after: Option<String>,
    },
    ServerError {
        status: u16,
    },
}

impl Refusal {
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Refusal::Unauthorized(_) => outcome::SESSION_EXPIRED,
            Refusal::RateLimited { .. } => outcome::RATE_LIMITED,
            Refusal::ServerError { .. } => outcome::SERVER_ERROR,
        }
    }
}

impl Shared {
    pub(crate) fn new(
        faults: Faults,
        rules: Rules,
        auth: Option<AuthConfig>,
        record_keys: bool,
    ) -> anyhow::Result<Self> {
        if !(0.0..=1.0).contains(&faults.lock_probability) {
            bail!(
                "lock_probability must be within [0, 1], not {}",
                faults.lock_probability
            );
        }
        if faults
            .rate_limit
            .as_ref()
            .is_some_and(|l| l.window.is_zero())
        {
            bail!("a rate limit's window must not be zero");
        }
        if let Some(burst) = &faults.error_burst {
            axum::http::StatusCode::from_u16(burst.status)
                .ok()
                .filter(|s| s.is_server_error())
                .with_context(|| {
                    format!(
                        "an error burst's status must be a 5xx, not {}",
                        burst.status
                    )
                })?;
        }
        let epoch = Instant::now();
        let inner = Inner {
            log: Vec::new(),
            stats: Stats::default(),
            announcements: Vec::new(),
            store: Store::new(&rules.unique),
            limiter: faults.rate_limit.clone().map(|l| Limiter::new(l, epoch)),
            tokens: auth.as_ref().map(Tokens::new).unwrap_or_default(),
            data_arrivals: 0,
            admitted: 0,
            seen: HashMap::new(),
        };
        Ok(Shared {
            faults,
            rules,
            auth,
            record_keys,
            idempotency_header: HeaderName::from_static("idempotency-key"),
            inner: Mutex::new(inner),
        })
    }

    /// Takes idempotency keys from the header `name` instead of `Idempotency-Key`.
    pub(crate) fn with_idempotency_header(self, name: HeaderName) -> Self {
        Shared {
            idempotency_header: name,
            ..self
        }
    }

    /// The request's idempotency key, when it has one that is text.
    pub(crate) fn idempotency_key(&self, headers: &HeaderMap) -> Option<String> {
        let value = headers.get(&self.idempotency_header)?;
        value.to_str().ok().map(str::to_owned)
    }

    /// Locks the state. A handler that panicked cannot leave it half-updated in a way
    /// that matters to a test, so a poisoned lock is simply taken over.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether request records keep their keys.
    pub(crate) fn keeps_keys(&self) -> bool {
        self.record_keys
    }

    /// Logs a request as it arrives and gives it its sequence number.
    pub(crate) fn arrive(
        &self,
        method: &str,
        uri: &Uri,
        headers: &HeaderMap,
        data: bool,
    ) -> Arrival {
        let authorization = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let idempotency_key = self.idempotency_key(headers);
        let arrived_at = SystemTime::now();
        let arrived = Instant::now();
        let mut inner = self.lock();
        let seq = inner.log.len() as u64;
        let data_ordinal = data.then(|| {
            inner.data_arrivals += 1;
            inner.data_arrivals - 1
        });
        inner.log.push(RequestRecord {
            seq,
            arrived_at,
            arrived,
            method: method.to_owned(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            status: 0,
            keys: Vec::new(),
            authorization,
            idempotency_key,
            outcome: outcome::PENDING.to_owned(),
        });
        Arrival { seq, data_ordinal }
    }

    /// Waits as the latency fault asks for this request, if at all.
    pub(crate) async fn delay(&self, arrival: Arrival) {
        let Some(ordinal) = arrival.data_ordinal else {
            return;
        };
        if let Some(latency) = self.faults.latency.filter(|l| l.applies(ordinal)) {
            tokio::time::sleep(latency.delay).await;
        }
    }

    /// Decides whether a data request may be processed: authentication first, then the
    /// rate limit, then error bursts. A request refused by authentication uses none of the
    /// window's budget; one that got past authentication has used a request of its token's
    /// budget whatever happens next, since every request made with a token counts. Refusals
    /// by the rate limit are recorded as announcements.
    pub(crate) fn admit(&self, authorization: Option<&str>) -> Result<(), Refusal> {
        let now = Instant::now();
        let now_wall = SystemTime::now();
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(auth) = &self.auth {
            inner
                .tokens
                .admit(auth, authorization)
                .map_err(Refusal::Unauthorized)?;
        }
        if let Some(limiter) = &mut inner.limiter
            && let LimitDecision::Refuse {
                retry_after,
                not_before,
            } = limiter.decide(now, now_wall)
        {
            inner.announcements.push(Announcement {
                sent_at: now_wall,
                sent: now,
                not_before,
            });
            let style = self
                .faults
                .rate_limit
                .as_ref()
                .map_or(LimitStyle::TooManyRequests, |l| l.style);
            return Err(Refusal::RateLimited { style, retry_after });
        }
        let ordinal = inner.admitted;
        inner.admitted += 1;
        match self.faults.error_burst {
            Some(burst) if burst.hits(ordinal) => Err(Refusal::ServerError {
                status: burst.status,
            }),
            _ => Ok(()),
        }
    }

    /// Runs the OAuth refresh-token grant.
    pub(crate) fn grant(&self, form: &HashMap<String, String>) -> Option<Grant> {
        let auth = self.auth.as_ref().filter(|a| a.oauth.is_some())?;
        Some(self.lock().tokens.grant(auth, self.faults.seed, form))
    }

    /// Completes a request's log entry and counts it. `records` is how many records its
    /// body held (0 if it was not a parseable data request); `keys` are dropped when the
    /// simulator was told not to keep them.
    pub(crate) fn finish(
        &self,
        seq: u64,
        status: u16,
        outcome: &str,
        keys: Vec<String>,
        records: usize,
    ) {
        let keys = if self.record_keys { keys } else { Vec::new() };
        let mut inner = self.lock();
        let stats = &mut inner.stats;
        stats.requests += 1;
        stats.records_received += records as u64;
        *stats.by_status.entry(status).or_default() += 1;
        match outcome {
            outcome::RATE_LIMITED => stats.rate_limited += 1,
            outcome::SESSION_EXPIRED => stats.session_expired += 1,
            outcome::SERVER_ERROR => stats.server_errors += 1,
            outcome::BATCH_REJECTED => stats.batch_rejections += 1,
            outcome::TOKEN_ISSUED => stats.token_refreshes += 1,
            outcome::REPLAYED => stats.replays += 1,
            _ => {}
        }
        tracing::trace!(seq, status, outcome, "simulated destination answered");
        if let Some(entry) = usize::try_from(seq).ok().and_then(|i| inner.log.get_mut(i)) {
            entry.status = status;
            entry.outcome = outcome.to_owned();
            entry.keys = keys;
        }
    }

    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }

    pub(crate) fn announcements(&self) -> Vec<Announcement> {
        self.lock().announcements.clone()
    }

    pub(crate) fn stats(&self) -> Stats {
        let inner = self.lock();
        let mut stats = inner.stats.clone();
        stats.records_stored = inner.store.len() as u64;
        stats
    }
}

impl Inner {
    /// Counts a data request as one of `operation` (see `Stats::by_operation`).
    pub(crate) fn count_operation(&mut self, operation: &str) {
        *self
            .stats
            .by_operation
            .entry(operation.to_owned())
            .or_default() += 1;
    }

    pub(crate) fn count_deleted(&mut self) {
        self.stats.records_deleted += 1;
    }

    /// How many times `key` was seen before, counting this time as seen.
    pub(crate) fn sighting(&mut self, key: &str) -> u64 {
        let n = self.seen.entry(key.to_owned()).or_default();
        *n += 1;
        *n - 1
    }

    pub(crate) fn count_record_error(&mut self, code: &str) {
        *self.stats.record_errors.entry(code.to_owned()).or_default() += 1;
    }
}
