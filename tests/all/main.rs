//! Integration tests of the `sluice` host: real components built from source by the
//! build, real HTTP over loopback against the simulated destinations in `tests/sim`.

mod common;

mod behaviors;
mod classify_props;
mod cli;
mod command_source;
mod config;
mod conformance;
mod console;
mod console_browser;
mod crash;
mod delivered;
mod deploy;
mod engine;
mod hostile;
mod ledger;
mod observe;
mod operator;
mod polyglot;
mod pool;
mod postgres_source;
mod rest;
mod salesforce;
mod sandbox;
mod secrets;
mod sources;
mod stops;
mod storms;
