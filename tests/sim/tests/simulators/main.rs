//! The simulators over real loopback HTTP, driven by a plain client.

mod auth;
mod couchdb;
mod faults;
mod hostile;
mod hubspot;
mod rest;
mod rest_deletes;
mod salesforce;
mod salesforce_collection;
mod support;
