//! The host's own types for what crosses the connector boundary.
//!
//! The engine, the transport and the conformance check speak these, never a WIT
//! version's generated types: each version module (`wit/since_v*.rs`) converts its own
//! into them, so a new WIT version changes no caller.
//!
//! Two input types are the latest version's generated types re-exported, not copies:
//! [`SourceRecord`] (every batch is lowered into the guest straight from the records the
//! source reader made) and [`HttpResponse`] (a body of megabytes goes to `classify`
//! without being copied first). An older version module converts from them when it is
//! called. Everything a connector returns is owned here and converted by move: strings
//! and byte vectors change hands, no byte is copied.

pub use super::wit::latest::{HttpResponse, Operation, SourceRecord};

impl SourceRecord {
    /// A record read from the source: an upsert until a behaviour says otherwise.
    pub fn new(key: String, payload: String) -> SourceRecord {
        SourceRecord {
            key,
            payload,
            operation: Operation::Upsert,
            destination_id: None,
        }
    }
}

impl SourceRecord {
    /// A delete of a record the destination holds (`behavior = "mirror"`): the host
    /// keeps a hash of what it delivered, not the data, so its payload is `{}`.
    pub fn delete(key: String, destination_id: Option<String>) -> SourceRecord {
        SourceRecord {
            key,
            payload: "{}".to_string(),
            operation: Operation::Delete,
            destination_id,
        }
    }
}

impl Operation {
    /// Its name in the WIT, in configs and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Upsert => "upsert",
            Operation::Update => "update",
            Operation::Insert => "insert",
            Operation::Delete => "delete",
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl HttpResponse {
    /// A response as a destination might have sent it: for the conformance check's
    /// canned answers and for tests of `classify`.
    pub fn recorded(
        status: u16,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        received_at_ms: u64,
    ) -> HttpResponse {
        HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body,
            truncated: false,
            received_at_ms,
        }
    }
}

/// Why a connector refused a record, a batch or a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
    /// The fields of the record at fault, when the connector can name them.
    pub fields: Vec<String>,
}

/// The request a connector built for one batch; the host sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// What `classify` says about one record of a batch the destination answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Delivered, with the destination's id for it when there is one.
    Delivered(Option<String>),
    Rejected(Failure),
    Retry(Failure),
    Permanent(Failure),
}

/// What `precheck` says about a record it will not let be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrecheckOutcome {
    Rejected(Failure),
    Permanent(Failure),
}

/// A wait the destination stated when it rate-limited a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    AfterMs(u64),
    UntilUnixMs(u64),
}

/// What `classify` says about a whole response (see ARCHITECTURE.md, the verdict table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    PerRecord(Vec<RecordOutcome>),
    BatchRejected(Failure),
    RateLimited(Option<Wait>),
    Transient(Failure),
    AuthExpired(Failure),
    Fatal(Failure),
}

/// What a connector says it can do, in `configure`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    pub limits: Limits,
    /// The operations it builds requests for.
    pub operations: Vec<Operation>,
    /// Whether it can update a record the host has no destination id for.
    pub update_by_key: bool,
}

/// The batch limits a connector asks for in `configure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_batch_records: u32,
    pub max_batch_bytes: u64,
}
