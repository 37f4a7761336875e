//! `sluice:connector@0.1.0`, frozen: its generated bindings, its host imports and the
//! conversions between its types and the host's. Connectors built against 0.1.0 keep
//! loading as long as this module stays.
//!
//! What 0.1.0 cannot say: a 0.1.0 connector upserts, so its capabilities are `upsert`
//! alone (a sync with another behaviour is refused before it reads anything); it gets no
//! idempotency key, no operation in `classify` and no `truncated` flag. Its records and
//! responses are copied from the host's (the latest version's) types on each call.

use wasmtime::Store;
use wasmtime::component::{HasSelf, Linker};

use super::super::guest::{GuestState, LogLevel};
use super::super::types as host_types;

wasmtime::component::bindgen!({
    path: "../wit/0.1.0",
    world: "destination-connector",
});

use self::sluice::connector::{host, types};

use super::super::types::{HttpResponse, Operation, SourceRecord};

pub type Pre = DestinationConnectorPre<GuestState>;
pub type Bindings = DestinationConnector;

pub fn add_to_linker(linker: &mut Linker<GuestState>) -> wasmtime::Result<()> {
    DestinationConnector::add_to_linker::<_, HasSelf<_>>(linker, |state| state)
}

impl types::Host for GuestState {}

impl host::Host for GuestState {
    fn log(&mut self, level: host::Level, message: String) {
        let level = match level {
            host::Level::Trace => LogLevel::Trace,
            host::Level::Debug => LogLevel::Debug,
            host::Level::Info => LogLevel::Info,
            host::Level::Warn => LogLevel::Warn,
            host::Level::Error => LogLevel::Error,
        };
        self.log(level, &message);
    }
}

pub fn configure(
    b: &Bindings,
    store: &mut Store<GuestState>,
    settings: &[(String, String)],
) -> wasmtime::Result<Result<host_types::Capabilities, host_types::Failure>> {
    let answer = b
        .sluice_connector_destination()
        .call_configure(store, settings)?;
    Ok(answer
        .map(|limits| host_types::Capabilities {
            limits: limits.into(),
            operations: vec![Operation::Upsert],
            update_by_key: false,
        })
        .map_err(Into::into))
}

pub fn precheck(
    b: &Bindings,
    store: &mut Store<GuestState>,
    batch: &[SourceRecord],
) -> wasmtime::Result<Vec<Option<host_types::PrecheckOutcome>>> {
    let outcomes = b
        .sluice_connector_destination()
        .call_precheck(store, &records(batch))?;
    Ok(outcomes.into_iter().map(|o| o.map(Into::into)).collect())
}

pub fn build_request(
    b: &Bindings,
    store: &mut Store<GuestState>,
    batch: &[SourceRecord],
) -> wasmtime::Result<Result<host_types::HttpRequest, host_types::Failure>> {
    let answer = b
        .sluice_connector_destination()
        .call_build_request(store, &records(batch))?;
    Ok(answer.map(Into::into).map_err(Into::into))
}

pub fn classify(
    b: &Bindings,
    store: &mut Store<GuestState>,
    keys: &[String],
    response: &HttpResponse,
) -> wasmtime::Result<host_types::Verdict> {
    let verdict =
        b.sluice_connector_destination()
            .call_classify(store, keys, &response_of(response))?;
    Ok(verdict.into())
}

/// A batch as 0.1.0 sees it: keys and payloads (the host sends a 0.1.0 connector upserts
/// only, so the operation says nothing and there is no destination id to need).
fn records(batch: &[SourceRecord]) -> Vec<types::SourceRecord> {
    batch
        .iter()
        .map(|r| types::SourceRecord {
            key: r.key.clone(),
            payload: r.payload.clone(),
        })
        .collect()
}

fn response_of(r: &HttpResponse) -> types::HttpResponse {
    types::HttpResponse {
        status: r.status,
        headers: r.headers.clone(),
        body: r.body.clone(),
        received_at_ms: r.received_at_ms,
    }
}

impl From<types::Failure> for host_types::Failure {
    fn from(f: types::Failure) -> Self {
        host_types::Failure {
            code: f.code,
            message: f.message,
            fields: f.fields,
        }
    }
}

impl From<types::Limits> for host_types::Limits {
    fn from(l: types::Limits) -> Self {
        host_types::Limits {
            max_batch_records: l.max_batch_records,
            max_batch_bytes: l.max_batch_bytes,
        }
    }
}

impl From<types::HttpRequest> for host_types::HttpRequest {
    fn from(r: types::HttpRequest) -> Self {
        host_types::HttpRequest {
            method: r.method,
            url: r.url,
            headers: r.headers,
            body: r.body,
        }
    }
}

impl From<types::PrecheckOutcome> for host_types::PrecheckOutcome {
    fn from(o: types::PrecheckOutcome) -> Self {
        match o {
            types::PrecheckOutcome::Rejected(f) => host_types::PrecheckOutcome::Rejected(f.into()),
            types::PrecheckOutcome::Permanent(f) => {
                host_types::PrecheckOutcome::Permanent(f.into())
            }
        }
    }
}

impl From<types::RecordOutcome> for host_types::RecordOutcome {
    fn from(o: types::RecordOutcome) -> Self {
        use host_types::RecordOutcome as H;
        match o {
            types::RecordOutcome::Delivered(id) => H::Delivered(id),
            types::RecordOutcome::Rejected(f) => H::Rejected(f.into()),
            types::RecordOutcome::Retry(f) => H::Retry(f.into()),
            types::RecordOutcome::Permanent(f) => H::Permanent(f.into()),
        }
    }
}

impl From<types::Wait> for host_types::Wait {
    fn from(w: types::Wait) -> Self {
        match w {
            types::Wait::AfterMs(ms) => host_types::Wait::AfterMs(ms),
            types::Wait::UntilUnixMs(ms) => host_types::Wait::UntilUnixMs(ms),
        }
    }
}

impl From<types::Verdict> for host_types::Verdict {
    fn from(v: types::Verdict) -> Self {
        use host_types::Verdict as H;
        match v {
            types::Verdict::PerRecord(outcomes) => {
                H::PerRecord(outcomes.into_iter().map(Into::into).collect())
            }
            types::Verdict::BatchRejected(f) => H::BatchRejected(f.into()),
            types::Verdict::RateLimited(wait) => H::RateLimited(wait.map(Into::into)),
            types::Verdict::Transient(f) => H::Transient(f.into()),
            types::Verdict::AuthExpired(f) => H::AuthExpired(f.into()),
            types::Verdict::Fatal(f) => H::Fatal(f.into()),
        }
    }
}
