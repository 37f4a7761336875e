//! A pool of `sluice serve` workers sharing one state database: each due sync run (or
//! each partition of one), and each retry pass, is a row of `sluice_work` that exactly one
//! worker claims with a lease (`FOR UPDATE SKIP LOCKED`), renews while it works, and
//! finishes. A worker that dies stops renewing; after `lease_timeout` another claims the
//! row (a new generation) and resumes from the ledger. A worker whose lease moved on is
//! fenced: its ledger writes check the generation in their own transaction and fail, and
//! it stops that work as soon as it learns so.
//!
//! - `queue.rs`: the rows: enqueue, claim, renew, release, finish.
//! - `worker.rs`: one worker's loop: the schedule, claims, leases, shutdown.

pub(crate) mod queue;
mod worker;

pub use queue::{Claim, Kind, Queue};
pub use worker::{Pool, PoolOptions};
