//! The conformance check behind `sluice connector check`: does a component implement the
//! `destination-connector` world, and does it keep the contract?
//!
//! It loads the component as the host would, configures it with the given settings, runs a
//! small sample batch through `precheck` and `build-request`, and then a suite of canned
//! responses through `classify`: per-record 2xx bodies, a whole-batch 400, 429 with
//! `Retry-After` in seconds and as an HTTP-date, 503, 401, 500, a malformed body, an empty
//! body and a body of 10 MiB. Every step says what the connector decided. Contract
//! violations (a wrong world or version, an import the sandbox does not provide, settings
//! refused, limits of zero, a per-record list of the wrong length, a malformed request, a
//! request to a host outside `allowed_hosts`, a trap, a timeout, memory over the limit)
//! make the component non-conformant, each reported by name with what to fix. Warnings
//! (a 429 that is not read as a rate limit, say) point at likely mistakes but do not.

mod cases;
mod report;
mod runner;

pub use cases::show;
pub use report::{Report, Status, Step, Violation};
pub use runner::{Options, check, check_with};
