//! Simulated SaaS destinations for Sluice's tests and `sluice demo`.
//!
//! Each simulator is a real HTTP server on loopback that really stores what it accepts,
//! logs every request and injects seeded, deterministic faults: row locks, rate limits
//! with `Retry-After`, bursts of server errors, slow responses and expiring sessions. The
//! failure modes are the ones reverse-ETL tools meet in practice (Census, Zuora): invalid
//! fields, missing parents, locked rows, throttling and expired credentials.
//!
//! - [`salesforce`]: Salesforce-like sObject Collections: upsert by external id, insert,
//!   update and delete by id.
//! - [`rest`]: a generic REST batch endpoint with three response styles, an optional
//!   delete endpoint, and Stripe-like idempotency keys.
//! - [`hubspot`]: a HubSpot-like batch upsert by id property, answered out of order.
//! - [`couchdb`]: a CouchDB-like `_bulk_docs` with per-document answers.
//! - [`hostile`]: the REST protocol with switchable misbehaviours (useless `Retry-After`,
//!   echoed credentials, huge, truncated and slow bodies, resets, redirects, wrong-length
//!   results), for hardening tests.
//!
//! Both share [`faults`], [`validation`] and authentication ([`AuthConfig`]), and are
//! inspected through a [`SimHandle`].

mod auth;
mod common;
pub mod couchdb;
mod delete;
pub mod faults;
mod handle;
pub mod hostile;
pub mod hubspot;
mod idempotency;
mod keys;
pub mod postgres;
pub mod rest;
pub mod salesforce;
mod state;
mod store;
mod upsert;
pub mod validation;

#[cfg(test)]
mod test_support {
    use serde_json::{Map, Value};

    /// A test record's fields: `v` must be a JSON object.
    pub(crate) fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!("test records are objects"),
        }
    }
}

pub use auth::{AuthConfig, OAuthClient};
pub use faults::Faults;
pub use handle::{Announcement, RequestRecord, SimHandle, Stats};
pub use validation::Rules;

/// The labels of [`RequestRecord::outcome`].
pub mod outcome {
    pub const OK: &str = "ok";
    pub const PARTIAL: &str = "partial";
    pub const BATCH_REJECTED: &str = "batch_rejected";
    pub const CONFLICT: &str = "conflict";
    pub const RATE_LIMITED: &str = "rate_limited";
    pub const SESSION_EXPIRED: &str = "session_expired";
    pub const SERVER_ERROR: &str = "server_error";
    pub const BAD_REQUEST: &str = "bad_request";
    pub const TOKEN_ISSUED: &str = "token_issued";
    pub const TOKEN_REFUSED: &str = "token_refused";
    pub const NOT_FOUND: &str = "not_found";
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    pub const PENDING: &str = "pending";
    pub const REPLAYED: &str = "replayed";
}
