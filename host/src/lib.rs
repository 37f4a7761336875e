//! Sluice delivers records from a source to SaaS destinations through destination
//! connectors that are sandboxed WebAssembly components.
//!
//! The host owns everything that must be right every time (batching, concurrency, HTTP,
//! credentials, retries with backoff, rate limits, batch bisection); a connector only
//! turns a batch into a request and a response into a verdict. See ARCHITECTURE.md.

pub mod auth;
pub mod backoff;
pub mod builtin;
pub mod clock;
pub mod concern;
pub mod config;
pub mod conformance;
pub mod console;
pub mod demo;
pub mod engine;
pub mod error_chain;
pub mod fate;
pub mod history;
pub mod inspector;
pub mod ledger;
pub mod output;
pub mod pg;
pub mod pool;
pub mod report;
pub mod retry_job;
pub mod run_plan;
pub mod sandbox;
pub mod schedule;
pub mod secrets;
pub mod source;
pub mod sync;
pub mod transport;
