//! Telling a poison record from a broken connector. A connector call (precheck,
//! build-request) that fails on the connector's memory or time limit is bisected like a
//! refused batch; a single record that alone makes the call fail is rejected with
//! `CONNECTOR_LIMIT`, but only once the connector has shown in this run that it can do
//! that call at all. Until then one such record is set aside, to be judged once its
//! worker has done another batch (or has no more), and a second means the connector fails
//! on everything: the run stops, as for any other trap.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use crate::fate::RecordFailure;
use crate::sandbox::{GuestError, GuestErrorKind};

/// What a run knows about its connector's limit failures, shared by every worker.
#[derive(Default)]
pub struct LimitFailures {
    precheck_worked: AtomicBool,
    build_worked: AtomicBool,
    set_aside: AtomicU32,
}

/// What to do about one record that alone made a call fail on a limit.
#[derive(Debug, PartialEq, Eq)]
pub enum Judgement {
    /// The connector does this call for other records: this one is at fault.
    Reject(RecordFailure),
    /// Nothing proves the connector works yet: judge the record later
    /// ([`LimitFailures::at_fault`]).
    SetAside,
    /// The connector fails this call whatever the record: stop the run.
    Stop,
}

/// A call that failed on the connector's memory or time limit (not any other trap).
pub fn is_limit(err: &GuestError) -> bool {
    matches!(
        err.kind,
        GuestErrorKind::MemoryLimit | GuestErrorKind::Timeout
    )
}

/// The failure of a record that alone made a call fail on a limit; names the limit and
/// the call.
pub fn connector_limit(err: &GuestError) -> RecordFailure {
    RecordFailure::new(
        "CONNECTOR_LIMIT",
        format!("this record alone makes the connector fail: {err}"),
    )
}

impl LimitFailures {
    /// `call` ("precheck" or "build-request") completed for some batch.
    pub fn worked(&self, call: &str) {
        if let Some(flag) = self.flag(call) {
            flag.store(true, Ordering::Relaxed);
        }
    }

    /// One record alone made `err.call` fail on a limit.
    pub fn judge(&self, err: &GuestError) -> Judgement {
        if let Some(failure) = self.at_fault(err) {
            Judgement::Reject(failure)
        } else if self.set_aside.fetch_add(1, Ordering::Relaxed) == 0 {
            Judgement::SetAside
        } else {
            Judgement::Stop
        }
    }

    /// The failure of a record that alone made `err.call` fail on a limit, once that call
    /// has worked for another batch; `None` while nothing proves the connector can do it.
    pub fn at_fault(&self, err: &GuestError) -> Option<RecordFailure> {
        self.flag(err.call)
            .is_some_and(|f| f.load(Ordering::Relaxed))
            .then(|| connector_limit(err))
    }

    fn flag(&self, call: &str) -> Option<&AtomicBool> {
        match call {
            "precheck" => Some(&self.precheck_worked),
            "build-request" => Some(&self.build_worked),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::SandboxLimits;

    fn limit(call: &'static str) -> GuestError {
        GuestError {
            connector: "c".into(),
            call,
            kind: GuestErrorKind::MemoryLimit,
            limits: SandboxLimits::default(),
        }
    }

    #[test]
    fn a_record_is_rejected_only_once_the_call_has_worked() {
        let l = LimitFailures::default();
        let err = limit("build-request");
        assert_eq!(l.judge(&err), Judgement::SetAside);
        assert_eq!(l.at_fault(&err), None);
        // Another record failing alone before anything worked: the connector is broken.
        assert_eq!(l.judge(&err), Judgement::Stop);
        // Precheck working proves nothing about build-request.
        l.worked("precheck");
        assert_eq!(l.at_fault(&err), None);
        l.worked("build-request");
        let failure = l.at_fault(&err).unwrap();
        assert_eq!(l.judge(&err), Judgement::Reject(failure.clone()));
        assert_eq!(failure.code, "CONNECTOR_LIMIT");
        assert!(
            failure
                .message
                .contains("memory limit of 64.0 MiB in `build-request`"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn only_limits_count() {
        assert!(is_limit(&limit("precheck")));
        let trap = GuestError {
            kind: GuestErrorKind::Trap("unreachable".into()),
            ..limit("precheck")
        };
        assert!(!is_limit(&trap));
    }
}
