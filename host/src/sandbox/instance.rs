//! One instance of a connector, and the errors a call into it can end in.

use std::fmt;
use std::sync::Arc;

use wasmtime::{Store, Trap};

use super::guest::GuestState;
use super::runtime::{SandboxLimits, ticks};
use super::types::{
    Capabilities, Failure, HttpRequest, HttpResponse, Operation, PrecheckOutcome, SourceRecord,
    Verdict,
};
use super::wit::Bindings;

/// What went wrong in a call into a connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestErrorKind {
    /// The call ran past the connector's `call_timeout`.
    Timeout,
    /// The instance tried to grow its memory past `memory_limit`.
    MemoryLimit,
    /// The guest trapped: a panic, `unreachable`, an out-of-bounds access.
    Trap(String),
    /// The guest answered, but not as the contract requires (a list of the wrong length).
    Contract(String),
    /// An earlier call failed; a failed instance is never called again.
    Unusable,
}

/// A failed call into a connector: names the connector, the call and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestError {
    pub connector: Arc<str>,
    pub call: &'static str,
    pub kind: GuestErrorKind,
    pub limits: SandboxLimits,
}

impl fmt::Display for GuestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (connector, call) = (&self.connector, self.call);
        match &self.kind {
            GuestErrorKind::Timeout => write!(
                f,
                "connector `{connector}` exceeded its call time limit of {} in `{call}` \
                 (raise `call_timeout` if the work is legitimate)",
                humantime::format_duration(self.limits.call_timeout)
            ),
            GuestErrorKind::MemoryLimit => write!(
                f,
                "connector `{connector}` exceeded its memory limit of {} in `{call}` \
                 (raise `memory_limit` if the work is legitimate)",
                bytesize::ByteSize(self.limits.memory as u64)
                    .display()
                    .iec()
            ),
            GuestErrorKind::Trap(detail) => {
                write!(f, "connector `{connector}` trapped in `{call}`: {detail}")
            }
            GuestErrorKind::Contract(detail) => write!(
                f,
                "connector `{connector}` broke the contract in `{call}`: {detail}"
            ),
            GuestErrorKind::Unusable => write!(
                f,
                "connector `{connector}` cannot run `{call}`: the instance failed earlier"
            ),
        }
    }
}

impl std::error::Error for GuestError {}

impl GuestError {
    pub(super) fn from_wasmtime(
        connector: &Arc<str>,
        call: &'static str,
        store: &Store<GuestState>,
        limits: SandboxLimits,
        err: wasmtime::Error,
    ) -> Self {
        let kind = if store.data().memory.exceeded {
            GuestErrorKind::MemoryLimit
        } else if err.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
            GuestErrorKind::Timeout
        } else {
            // `{:#}` keeps the trap reason and the guest's backtrace, in one paragraph.
            GuestErrorKind::Trap(format!("{err:#}"))
        };
        GuestError {
            connector: connector.clone(),
            call,
            kind,
            limits,
        }
    }

    /// This error in one line: a trap's reason without the guest's backtrace (which
    /// Wasmtime gives one frame a line). The full text is `Display`'s.
    pub fn one_line(&self) -> String {
        let GuestErrorKind::Trap(detail) = &self.kind else {
            return self.to_string();
        };
        let Some((first, _)) = detail.split_once('\n') else {
            return self.to_string();
        };
        let last = detail.lines().last().unwrap_or_default();
        let reason = last
            .rsplit_once(">: ")
            .map_or(last.trim(), |(_, r)| r.trim());
        let first = first.trim_end_matches(|c: char| c == ':' || c.is_whitespace());
        let first = first
            .strip_suffix("error while executing at wasm backtrace")
            .unwrap_or(first)
            .trim_end();
        let head = format!("connector `{}` trapped in `{}`:", self.connector, self.call);
        if first.is_empty() {
            format!("{head} {reason}")
        } else {
            format!("{head} {first} {reason}")
        }
    }

    pub fn contract(connector: &str, call: &'static str, detail: String) -> Self {
        GuestError {
            connector: connector.into(),
            call,
            kind: GuestErrorKind::Contract(detail),
            limits: SandboxLimits::default(),
        }
    }
}

/// A live connector instance. Calls are synchronous and bounded by the connector's
/// limits; run them off the async executor (the engine uses `spawn_blocking`).
pub struct ConnectorInstance {
    name: Arc<str>,
    store: Store<GuestState>,
    bindings: Bindings,
    limits: SandboxLimits,
    failed: bool,
}

impl ConnectorInstance {
    pub(super) fn new(
        name: Arc<str>,
        store: Store<GuestState>,
        bindings: Bindings,
        limits: SandboxLimits,
    ) -> Self {
        ConnectorInstance {
            name,
            store,
            bindings,
            limits,
            failed: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn configure(
        &mut self,
        settings: &[(String, String)],
    ) -> Result<Result<Capabilities, Failure>, GuestError> {
        self.call("configure", |b, s| b.configure(s, settings))
    }

    /// One entry per record; a list of another length is refused here, once for every
    /// caller.
    pub fn precheck(
        &mut self,
        batch: &[SourceRecord],
    ) -> Result<Vec<Option<PrecheckOutcome>>, GuestError> {
        let outcomes = self.call("precheck", |b, s| b.precheck(s, batch))?;
        if outcomes.len() != batch.len() {
            return Err(self.violation(
                "precheck",
                format!(
                    "returned {} outcomes for a batch of {} records",
                    outcomes.len(),
                    batch.len()
                ),
            ));
        }
        Ok(outcomes)
    }

    pub fn build_request(
        &mut self,
        batch: &[SourceRecord],
        idempotency_key: &str,
    ) -> Result<Result<HttpRequest, Failure>, GuestError> {
        self.call("build-request", |b, s| {
            b.build_request(s, batch, idempotency_key)
        })
    }

    /// A verdict whose per-record list does not match `keys` is refused here.
    pub fn classify(
        &mut self,
        keys: &[String],
        operation: Operation,
        response: &HttpResponse,
    ) -> Result<Verdict, GuestError> {
        let verdict = self.call("classify", |b, s| b.classify(s, keys, operation, response))?;
        if let Verdict::PerRecord(outcomes) = &verdict
            && outcomes.len() != keys.len()
        {
            return Err(self.violation(
                "classify",
                format!(
                    "returned {} per-record outcomes for a batch of {} records",
                    outcomes.len(),
                    keys.len()
                ),
            ));
        }
        Ok(verdict)
    }

    fn violation(&mut self, call: &'static str, detail: String) -> GuestError {
        GuestError::contract(&self.name, call, detail)
    }

    fn call<R>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(&Bindings, &mut Store<GuestState>) -> wasmtime::Result<R>,
    ) -> Result<R, GuestError> {
        if self.failed {
            return Err(GuestError {
                connector: self.name.clone(),
                call,
                kind: GuestErrorKind::Unusable,
                limits: self.limits,
            });
        }
        self.store
            .set_epoch_deadline(ticks(self.limits.call_timeout));
        f(&self.bindings, &mut self.store).map_err(|err| {
            // After a trap an instance's state is undefined: never call it again.
            self.failed = true;
            GuestError::from_wasmtime(&self.name, call, &self.store, self.limits, err)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trapped(detail: &str) -> GuestError {
        GuestError {
            connector: "rest".into(),
            call: "classify",
            kind: GuestErrorKind::Trap(detail.into()),
            limits: SandboxLimits::default(),
        }
    }

    #[test]
    fn a_trap_in_one_line_keeps_its_reason_and_drops_the_backtrace() {
        let err = trapped(
            "error while executing at wasm backtrace:\n    0: 0x1f2 - rest!classify\n    \
             1: 0x3a4 - <unknown>!<wasm function 7>: wasm trap: wasm `unreachable` \
             instruction executed",
        );
        assert_eq!(
            err.one_line(),
            "connector `rest` trapped in `classify`: wasm trap: wasm `unreachable` \
             instruction executed"
        );
        assert_eq!(
            trapped("out of bounds memory access").one_line(),
            "connector `rest` trapped in `classify`: out of bounds memory access"
        );
        let timeout = GuestError {
            kind: GuestErrorKind::Timeout,
            ..trapped("")
        };
        assert_eq!(timeout.one_line(), timeout.to_string());
    }
}
