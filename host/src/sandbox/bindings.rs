//! Host-side bindings for the `destination-connector` world, generated from `wit/`.
//!
//! One module per supported WIT version: a frozen version keeps its bindings, so
//! connectors built against it keep loading (see ARCHITECTURE.md, "WIT versions").

pub mod v0_1_0 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "destination-connector",
    });
}

pub use v0_1_0::DestinationConnector;
pub use v0_1_0::DestinationConnectorPre;
pub use v0_1_0::sluice::connector::host::Level;
pub use v0_1_0::sluice::connector::types::{
    Failure, HttpRequest, HttpResponse, Limits, PrecheckOutcome, RecordOutcome, SourceRecord,
    Verdict, Wait,
};
