//! The simulators over real loopback HTTP, driven by a plain client.

mod auth;
mod faults;
mod rest;
mod salesforce;
mod support;
