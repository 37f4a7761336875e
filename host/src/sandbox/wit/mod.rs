//! The WIT version seam: one module per frozen version of `sluice:connector`, each with
//! its generated bindings, its linker set-up and the conversions into the host's types.
//!
//! Nothing outside `sandbox/` names a versioned path. A connector is linked against the
//! version it exports ([`ConnectorPre::new`]), and each call is dispatched to that
//! version's bindings. The next WIT version is a new `since_v*` module, an entry in
//! [`SUPPORTED_VERSIONS`] and a match arm in each `match` below; `latest` moves to it.

use anyhow::{Result, bail};
use wasmtime::Store;
use wasmtime::component::{InstancePre, Linker};

use super::guest::GuestState;
use super::types::{
    Capabilities, Failure, HttpRequest, HttpResponse, Operation, PrecheckOutcome, SourceRecord,
    Verdict,
};

pub mod since_v0_1_0;
pub mod since_v0_2_0;

/// The newest version: the host's input types are its generated ones.
pub use since_v0_2_0 as latest;

/// The WIT package versions this host can load, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.2.0", "0.1.0"];

/// Adds every supported version's host imports (and WASI) to `linker`.
pub fn add_to_linker(linker: &mut Linker<GuestState>) -> Result<()> {
    wasmtime_wasi::p2::add_to_linker_sync(linker)?;
    since_v0_1_0::add_to_linker(linker)?;
    since_v0_2_0::add_to_linker(linker)?;
    Ok(())
}

/// A connector linked against the version it was built for, ready to instantiate.
pub enum ConnectorPre {
    V0_1_0(since_v0_1_0::Pre),
    V0_2_0(since_v0_2_0::Pre),
}

impl ConnectorPre {
    /// Checks that `pre` implements the destination world of `version`.
    pub fn new(version: &str, pre: InstancePre<GuestState>) -> Result<Self> {
        match version {
            "0.1.0" => Ok(ConnectorPre::V0_1_0(since_v0_1_0::Pre::new(pre)?)),
            "0.2.0" => Ok(ConnectorPre::V0_2_0(since_v0_2_0::Pre::new(pre)?)),
            other => bail!("sluice:connector@{other} is not supported"),
        }
    }

    /// The WIT version the connector was built against.
    pub fn version(&self) -> &'static str {
        match self {
            ConnectorPre::V0_1_0(_) => "0.1.0",
            ConnectorPre::V0_2_0(_) => "0.2.0",
        }
    }

    pub fn instantiate(&self, store: &mut Store<GuestState>) -> wasmtime::Result<Bindings> {
        match self {
            ConnectorPre::V0_1_0(pre) => Ok(Bindings::V0_1_0(pre.instantiate(store)?)),
            ConnectorPre::V0_2_0(pre) => Ok(Bindings::V0_2_0(pre.instantiate(store)?)),
        }
    }
}

/// The exports of one instance, in the version it was built for.
pub enum Bindings {
    V0_1_0(since_v0_1_0::Bindings),
    V0_2_0(since_v0_2_0::Bindings),
}

impl Bindings {
    pub fn configure(
        &self,
        store: &mut Store<GuestState>,
        settings: &[(String, String)],
    ) -> wasmtime::Result<Result<Capabilities, Failure>> {
        match self {
            Bindings::V0_1_0(b) => since_v0_1_0::configure(b, store, settings),
            Bindings::V0_2_0(b) => since_v0_2_0::configure(b, store, settings),
        }
    }

    pub fn precheck(
        &self,
        store: &mut Store<GuestState>,
        batch: &[SourceRecord],
    ) -> wasmtime::Result<Vec<Option<PrecheckOutcome>>> {
        match self {
            Bindings::V0_1_0(b) => since_v0_1_0::precheck(b, store, batch),
            Bindings::V0_2_0(b) => since_v0_2_0::precheck(b, store, batch),
        }
    }

    pub fn build_request(
        &self,
        store: &mut Store<GuestState>,
        batch: &[SourceRecord],
        idempotency_key: &str,
    ) -> wasmtime::Result<Result<HttpRequest, Failure>> {
        match self {
            Bindings::V0_1_0(b) => since_v0_1_0::build_request(b, store, batch),
            Bindings::V0_2_0(b) => since_v0_2_0::build_request(b, store, batch, idempotency_key),
        }
    }

    pub fn classify(
        &self,
        store: &mut Store<GuestState>,
        keys: &[String],
        operation: Operation,
        response: &HttpResponse,
    ) -> wasmtime::Result<Verdict> {
        match self {
            Bindings::V0_1_0(b) => since_v0_1_0::classify(b, store, keys, response),
            Bindings::V0_2_0(b) => since_v0_2_0::classify(b, store, keys, operation, response),
        }
    }
}
