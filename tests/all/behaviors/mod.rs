//! Sync behaviours (upsert, update, insert, mirror), field mapping and `sluice plan`:
//! what the destination holds after each run, and what the ledger remembers.

mod mapping;
mod plan;

use serde_json::Value;

use crate::common;
use crate::common::Ran;

/// Rewrites the source of `ran`'s folder with `records` and runs sync `s` again, on the
/// same host.
async fn run_again(ran: &Ran, records: &[Value]) -> sluice::engine::RunReport {
    let data: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(ran.setup.dir.path().join("data.jsonl"), data).unwrap();
    common::run_on(&ran.host, &ran.setup).await.0
}
