//! Integration tests of the `sluice` host: real components built from source by the
//! build, real HTTP over loopback against the simulated destinations in `tests/sim`.

mod common;

mod cli;
mod config;
mod crash;
mod engine;
mod ledger;
mod observe;
mod rest;
mod salesforce;
mod sandbox;
