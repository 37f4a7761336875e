//! One assertion for a run summary: the counts a test cares about, checked in one call,
//! with the whole summary printed when any of them is off.

use sluice::engine::{Outcome, RunSummary};

/// The expected values of some of a summary's fields; the others are not checked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    pub outcome: Option<Outcome>,
    pub read: Option<u64>,
    pub delivered: Option<u64>,
    pub rejected: Option<u64>,
    pub permanent: Option<u64>,
    pub pending: Option<u64>,
    pub requests: Option<u64>,
    pub invalid_rows: Option<u64>,
    pub retries: Option<u64>,
    pub rate_limit_waits: Option<u64>,
    pub transient_failures: Option<u64>,
}

macro_rules! setters {
    ($($field:ident),*) => {
        $(
            pub fn $field(mut self, n: u64) -> Self {
                self.$field = Some(n);
                self
            }
        )*
    };
}

impl Expect {
    pub fn completed() -> Self {
        Self::outcome(Outcome::Completed)
    }

    pub fn failed() -> Self {
        Self::outcome(Outcome::Failed)
    }

    /// A failed run that settled nothing: none delivered, none rejected, all `read` pending.
    pub fn nothing_settled(read: u64) -> Self {
        Self::failed().delivered(0).rejected(0).pending(read)
    }

    pub fn outcome(outcome: Outcome) -> Self {
        Expect {
            outcome: Some(outcome),
            ..Expect::default()
        }
    }

    setters!(
        read,
        delivered,
        rejected,
        permanent,
        pending,
        requests,
        invalid_rows,
        retries,
        rate_limit_waits,
        transient_failures
    );

    /// The same fields, as `summary` has them.
    fn seen(&self, s: &RunSummary) -> Expect {
        fn pick<T: Copy>(wanted: Option<T>, actual: T) -> Option<T> {
            wanted.map(|_| actual)
        }
        Expect {
            outcome: pick(self.outcome, s.outcome),
            read: pick(self.read, s.read),
            delivered: pick(self.delivered, s.delivered),
            rejected: pick(self.rejected, s.rejected),
            permanent: pick(self.permanent, s.permanent),
            pending: pick(self.pending, s.pending),
            requests: pick(self.requests, s.requests),
            invalid_rows: pick(self.invalid_rows, s.invalid_rows),
            retries: pick(self.retries, s.retries),
            rate_limit_waits: pick(self.rate_limit_waits, s.rate_limit_waits),
            transient_failures: pick(self.transient_failures, s.transient_failures),
        }
    }
}

/// Asserts every field `expect` names; on failure prints the whole summary.
#[track_caller]
pub fn assert_summary(summary: &RunSummary, expect: Expect) {
    assert_eq!(expect.seen(summary), expect, "summary: {summary:#?}");
}

/// [`assert_summary`] for one case of several: `case` names it on failure.
#[track_caller]
pub fn assert_summary_of(case: impl std::fmt::Display, summary: &RunSummary, expect: Expect) {
    assert_eq!(
        expect.seen(summary),
        expect,
        "{case}: summary: {summary:#?}"
    );
}
