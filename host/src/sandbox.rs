//! The WebAssembly sandbox that destination connectors run in.
//!
//! A connector is compiled once (and cached on disk), pre-instantiated, and then
//! instantiated once per worker. Every call into it runs under a memory limit and a time
//! limit, so a trap, an endless loop or a memory bomb becomes an error naming the
//! connector and the call; the host and other syncs go on.

mod cache;
mod guest;
mod instance;
mod runtime;
mod types;
mod wit;

pub use instance::{ConnectorInstance, GuestError, GuestErrorKind};
pub use runtime::{Connector, Runtime, SUPPORTED_VERSIONS, SandboxLimits, WorldError};
pub use types::{
    Capabilities, Failure, HttpRequest, HttpResponse, Limits, Operation, PrecheckOutcome,
    RecordOutcome, SourceRecord, Verdict, Wait,
};
