//! What a run counts, shared by the reader and every worker, and exported as metrics.

use std::sync::atomic::{AtomicU64, Ordering};

/// What a run counts. Each count is also exported as a Prometheus metric (when a
/// recorder is installed, as `sluice serve` does), so the summary, the progress line and
/// the metrics can never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    Read,
    InvalidRows,
    Duplicates,
    Unchanged,
    Held,
    /// Skipped by `behavior = "update"`: never delivered, so not at the destination.
    NotAtDestination,
    /// Skipped by `behavior = "insert"`: delivered before.
    AtDestination,
    /// Deletes a mirror run sent (records absent from the source).
    Deletes,
    /// Deletes the destination confirmed.
    Deleted,
    /// Failed records a mirror forgot: the source no longer has them, and they were never
    /// delivered, so there is nothing to delete and nothing to retry.
    FailuresForgotten,
    Delivered,
    Rejected,
    Permanent,
    Requests,
    Retries,
    RateLimitWaits,
    RateLimitWaitMs,
    Bisections,
    TransientFailures,
    AuthRenewals,
    ConnectorUs,
}

const COUNTS: usize = 21;

impl Count {
    /// The metric this count feeds, with its extra label.
    fn metric(self) -> Option<(&'static str, Option<(&'static str, &'static str)>)> {
        Some(match self {
            Count::Read => ("sluice_records_read_total", None),
            Count::InvalidRows => (
                "sluice_source_rows_skipped_total",
                Some(("reason", "invalid")),
            ),
            Count::Duplicates => (
                "sluice_source_rows_skipped_total",
                Some(("reason", "repeated_key")),
            ),
            Count::Unchanged => (
                "sluice_records_skipped_total",
                Some(("reason", "unchanged")),
            ),
            Count::Held => ("sluice_records_skipped_total", Some(("reason", "held"))),
            Count::NotAtDestination => (
                "sluice_records_skipped_total",
                Some(("reason", "not_at_destination")),
            ),
            Count::AtDestination => (
                "sluice_records_skipped_total",
                Some(("reason", "at_destination")),
            ),
            Count::Deletes => ("sluice_deletes_sent_total", None),
            Count::Deleted => ("sluice_records_total", Some(("status", "deleted"))),
            Count::FailuresForgotten => (
                "sluice_records_skipped_total",
                Some(("reason", "gone_from_source")),
            ),
            Count::Delivered => ("sluice_records_total", Some(("status", "delivered"))),
            Count::Rejected => ("sluice_records_total", Some(("status", "rejected"))),
            Count::Permanent => ("sluice_records_total", Some(("status", "permanent"))),
            // Requests are exported by status class in `request_finished`.
            Count::Requests => return None,
            Count::Retries => ("sluice_retries_total", None),
            Count::RateLimitWaits => ("sluice_rate_limit_waits_total", None),
            Count::RateLimitWaitMs => ("sluice_rate_limit_wait_milliseconds_total", None),
            Count::Bisections => ("sluice_bisections_total", None),
            Count::TransientFailures => ("sluice_transient_failures_total", None),
            Count::AuthRenewals => ("sluice_auth_renewals_total", None),
            Count::ConnectorUs => ("sluice_connector_call_microseconds_total", None),
        })
    }
}

/// The run's counters, shared by every worker, tagged with the sync and connector.
pub struct Counters {
    values: [AtomicU64; COUNTS],
    in_flight: AtomicU64,
    paused_until_ms: AtomicU64,
    labels: Vec<metrics::Label>,
}

impl Counters {
    pub fn new(sync: &str, connector: &str) -> Self {
        Counters {
            values: Default::default(),
            in_flight: AtomicU64::new(0),
            paused_until_ms: AtomicU64::new(0),
            labels: vec![
                metrics::Label::new("sync", sync.to_string()),
                metrics::Label::new("connector", connector.to_string()),
            ],
        }
    }

    pub fn add(&self, count: Count, n: u64) {
        self.values[count as usize].fetch_add(n, Ordering::Relaxed);
        if let Some((name, extra)) = count.metric() {
            let mut labels = self.labels.clone();
            if let Some((k, v)) = extra {
                labels.push(metrics::Label::new(k, v));
            }
            metrics::counter!(name, labels).increment(n);
        }
    }

    pub fn get(&self, count: Count) -> u64 {
        self.values[count as usize].load(Ordering::Relaxed)
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    pub fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("sluice_requests_in_flight", self.labels.clone()).increment(1.0);
    }

    /// A request ended: `status` 0 when no response came (timeout, connection error, or
    /// abandoned); `sent` is false when the host refused to send it at all.
    pub fn request_finished(&self, status: u16, duration: std::time::Duration, sent: bool) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("sluice_requests_in_flight", self.labels.clone()).decrement(1.0);
        if !sent {
            return;
        }
        self.add(Count::Requests, 1);
        let class = match status {
            0 => "none",
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        let mut labels = self.labels.clone();
        labels.push(metrics::Label::new("class", class));
        metrics::counter!("sluice_requests_total", labels).increment(1);
        metrics::histogram!("sluice_request_duration_seconds", self.labels.clone())
            .record(duration.as_secs_f64());
    }

    /// Notes a rate-limit pause until `until_ms` (ms since the Unix epoch).
    pub fn paused_until(&self, until_ms: u64) {
        self.paused_until_ms.fetch_max(until_ms, Ordering::Relaxed);
    }

    /// When the latest rate-limit pause ends (0: there was none).
    pub fn paused_until_ms(&self) -> u64 {
        self.paused_until_ms.load(Ordering::Relaxed)
    }
}
