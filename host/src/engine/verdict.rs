//! How a verdict reads, in one place: the conformance check prints it in full, the
//! inspector keeps its short form (`{:#}`) for every exchange.

use std::collections::BTreeMap;
use std::fmt;

use crate::sandbox::{RecordOutcome, Verdict, Wait};

/// `{}` gives every record's outcome and the wait as stated:
/// `per-record[delivered(id), rejected(CODE)]`, `rate-limited(after 30000 ms)`.
/// `{:#}` counts the outcomes instead, for the inspector: `per-record(delivered 2)`,
/// `rate-limited(wait 30000ms)`. Every other verdict reads the same in both:
/// `transient(HTTP_500)`.
impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::PerRecord(outcomes) if f.alternate() => {
                let mut counts = BTreeMap::<&str, usize>::new();
                for outcome in outcomes {
                    *counts.entry(outcome_name(outcome)).or_default() += 1;
                }
                let parts: Vec<String> = counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
                write!(f, "per-record({})", parts.join(", "))
            }
            Verdict::PerRecord(outcomes) => {
                let parts: Vec<String> = outcomes
                    .iter()
                    .map(|o| match o {
                        RecordOutcome::Delivered(id) => {
                            format!("delivered({})", id.as_deref().unwrap_or("-"))
                        }
                        RecordOutcome::Rejected(x)
                        | RecordOutcome::Retry(x)
                        | RecordOutcome::Permanent(x) => {
                            format!("{}({})", outcome_name(o), x.code)
                        }
                    })
                    .collect();
                write!(f, "per-record[{}]", parts.join(", "))
            }
            Verdict::RateLimited(wait) if f.alternate() => match wait {
                None => f.write_str("rate-limited"),
                Some(Wait::AfterMs(ms)) => write!(f, "rate-limited(wait {ms}ms)"),
                Some(Wait::UntilUnixMs(at)) => write!(f, "rate-limited(until {at})"),
            },
            Verdict::RateLimited(wait) => match wait {
                None => f.write_str("rate-limited(no wait given)"),
                Some(Wait::AfterMs(ms)) => write!(f, "rate-limited(after {ms} ms)"),
                Some(Wait::UntilUnixMs(at)) => {
                    write!(f, "rate-limited(until {at} ms since the epoch)")
                }
            },
            Verdict::BatchRejected(x) => write!(f, "batch-rejected({})", x.code),
            Verdict::Transient(x) => write!(f, "transient({})", x.code),
            Verdict::AuthExpired(x) => write!(f, "auth-expired({})", x.code),
            Verdict::Fatal(x) => write!(f, "fatal({})", x.code),
        }
    }
}

fn outcome_name(outcome: &RecordOutcome) -> &'static str {
    match outcome {
        RecordOutcome::Delivered(_) => "delivered",
        RecordOutcome::Rejected(_) => "rejected",
        RecordOutcome::Retry(_) => "retry",
        RecordOutcome::Permanent(_) => "permanent",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Failure;

    fn failure(code: &str) -> Failure {
        Failure {
            code: code.into(),
            message: String::new(),
            fields: Vec::new(),
        }
    }

    #[test]
    fn per_record_lists_outcomes_in_full_and_counts_them_short() {
        let verdict = Verdict::PerRecord(vec![
            RecordOutcome::Delivered(Some("a1".into())),
            RecordOutcome::Delivered(None),
            RecordOutcome::Rejected(failure("INVALID_EMAIL")),
            RecordOutcome::Retry(failure("ROW_LOCK")),
            RecordOutcome::Permanent(failure("DUPLICATE")),
        ]);
        assert_eq!(
            verdict.to_string(),
            "per-record[delivered(a1), delivered(-), rejected(INVALID_EMAIL), retry(ROW_LOCK), \
             permanent(DUPLICATE)]"
        );
        assert_eq!(
            format!("{verdict:#}"),
            "per-record(delivered 2, permanent 1, rejected 1, retry 1)"
        );
    }

    #[test]
    fn rate_limited_reads_its_wait() {
        let cases = [
            (None, "rate-limited(no wait given)", "rate-limited"),
            (
                Some(Wait::AfterMs(30_000)),
                "rate-limited(after 30000 ms)",
                "rate-limited(wait 30000ms)",
            ),
            (
                Some(Wait::UntilUnixMs(1_700_000_005_000)),
                "rate-limited(until 1700000005000 ms since the epoch)",
                "rate-limited(until 1700000005000)",
            ),
        ];
        for (wait, full, short) in cases {
            let verdict = Verdict::RateLimited(wait);
            assert_eq!(verdict.to_string(), full);
            assert_eq!(format!("{verdict:#}"), short);
        }
    }

    #[test]
    fn other_verdicts_read_the_same_in_both_forms() {
        let cases = [
            (
                Verdict::BatchRejected(failure("BAD")),
                "batch-rejected(BAD)",
            ),
            (
                Verdict::Transient(failure("HTTP_500")),
                "transient(HTTP_500)",
            ),
            (
                Verdict::AuthExpired(failure("HTTP_401")),
                "auth-expired(HTTP_401)",
            ),
            (Verdict::Fatal(failure("GONE")), "fatal(GONE)"),
        ];
        for (verdict, text) in cases {
            assert_eq!(verdict.to_string(), text);
            assert_eq!(format!("{verdict:#}"), text);
        }
    }
}
