//! Whether the destination could be reached in a run. A send that gets no HTTP response
//! (a refused connection, a timeout, a broken transfer) is not the destination refusing
//! data: its records stay pending, and a run that delivered nothing while sends went
//! unanswered has failed. A destination that never answered is not hammered: once a batch
//! has used up its attempts without one answer, the run takes no new batches.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::fate::RecordFailure;

/// The first words of a run's error when the destination could not be reached.
pub const UNREACHABLE: &str = "the destination could not be reached";

#[derive(Default)]
pub struct Reach {
    answered: AtomicBool,
    unanswered: AtomicU64,
    last: Mutex<Option<RecordFailure>>,
    gave_up: AtomicBool,
}

impl Reach {
    /// A send got an HTTP response, whatever its status.
    pub fn answered(&self) {
        self.answered.store(true, Ordering::Relaxed);
    }

    /// A send got no response.
    pub fn unanswered(&self, failure: &RecordFailure) {
        self.unanswered.fetch_add(1, Ordering::Relaxed);
        *self.last.lock().unwrap() = Some(failure.clone());
    }

    /// A batch used up its attempts without a response. True when the destination has not
    /// answered once in this run: the run should take no new batches.
    pub fn attempts_used_up(&self) -> bool {
        if self.answered.load(Ordering::Relaxed) {
            return false;
        }
        self.gave_up.store(true, Ordering::Relaxed);
        true
    }

    /// The run's error, when it delivered nothing while some sends got no response.
    pub fn error(&self, delivered: u64, max_attempts: u32) -> Option<String> {
        let unanswered = self.unanswered.load(Ordering::Relaxed);
        if delivered > 0 || unanswered == 0 {
            return None;
        }
        let mut text = format!(
            "{UNREACHABLE}: {unanswered} request{} got no response",
            if unanswered == 1 { "" } else { "s" }
        );
        if let Some(last) = &*self.last.lock().unwrap() {
            text.push_str(&format!(" (last: {}: {})", last.code, last.message));
        }
        if self.gave_up.load(Ordering::Relaxed) {
            text.push_str(&format!(
                "; it never answered and a batch used up its {max_attempts} attempts, so the \
                 run stopped taking new batches"
            ));
        }
        text.push_str("; nothing was delivered and unsettled records stay pending");
        Some(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreachable_destination_fails_a_run_that_delivered_nothing() {
        let reach = Reach::default();
        assert_eq!(reach.error(0, 3), None, "nothing was sent");
        reach.unanswered(&RecordFailure::new("CONNECTION_FAILED", "refused"));
        assert!(reach.attempts_used_up());
        let error = reach.error(0, 3).unwrap();
        assert!(error.starts_with(UNREACHABLE), "{error}");
        assert!(error.contains("1 request got no response (last: CONNECTION_FAILED: refused)"));
        assert!(error.contains("used up its 3 attempts"), "{error}");
        assert_eq!(reach.error(1, 3), None, "something was delivered");
    }

    #[test]
    fn a_destination_that_answered_once_is_not_given_up_on() {
        let reach = Reach::default();
        reach.answered();
        reach.unanswered(&RecordFailure::new("TIMEOUT", "slow"));
        assert!(!reach.attempts_used_up());
        let error = reach.error(0, 3).unwrap();
        assert!(!error.contains("stopped taking"), "{error}");
    }
}
