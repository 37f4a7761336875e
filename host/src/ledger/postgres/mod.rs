//! The ledger in a shared PostgreSQL database (`[state] postgres = { url_env = ... }`):
//! the same [`Store`](super::Store) of ordered trees and the same
//! [`Deliveries`](super::deliveries::Deliveries) as the embedded backend, as tables.
//!
//! - `connection.rs`: the one connection, on a thread of its own.
//! - `schema.rs`: the tables, their version, and the lock that keeps one process on them.
//! - `store.rs`: trees as rows of `sluice_kv`.
//! - `deliveries.rs`: each sync's delivered set as rows of `sluice_delivered`, one a key.
//!
//! Every write is its own transaction (a batch is one), committed before the call
//! returns: durable as PostgreSQL makes commits, so `flush` has nothing left to do.

mod connection;
mod deliveries;
mod schema;
mod store;
#[cfg(test)]
mod tests;

pub(crate) use connection::held;
pub use connection::{Db, DbError, Fence};
pub use deliveries::PgDeliveries;
pub use schema::{Access, SchemaError, prepare};
pub use store::PgStore;
