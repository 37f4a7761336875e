//! The simulators over real loopback HTTP, driven by a plain client.

mod auth;
mod couchdb;
mod faults;
mod hostile;
mod hubspot;
mod rest;
mod salesforce;
mod support;
