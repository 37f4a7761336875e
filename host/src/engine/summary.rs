//! What a run reports when it ends: for people (`sluice run`), machines (`--json`) and
//! the run history. The engine fills it; nothing here runs anything.

use serde::{Deserialize, Serialize};

use super::stop::StopKind;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every record read was settled (rejected records included).
    #[default]
    Completed,
    /// Stopped by a fatal verdict or a connector failure; unsettled records are pending.
    Failed,
    /// Stopped by the operator (Ctrl-C, SIGTERM); unsettled records are pending.
    Interrupted,
}

/// What a run did, for people (`sluice run`) and machines (`--json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunSummary {
    pub sync: String,
    /// Unique per run; the inspector's entries carry it.
    pub run_id: String,
    pub started_at_ms: u64,
    pub ended_at_ms: u64,
    pub outcome: Outcome,
    /// Why the run failed, when it did.
    pub error: Option<String>,
    /// The kind of cause that stopped the run early, when a worker stopped it: a caller
    /// branches on this, never on `error`'s text. Not kept in the run history.
    #[serde(skip)]
    pub stopped_by: Option<StopKind>,
    /// Why the run sent records the destination had confirmed before (the destination
    /// changed, or a full resync was asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resent_because: Option<String>,
    /// The partition of the sync's keys this run took (`I/N`), when it took one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Records read (from the source, or picked by the retry job).
    pub read: u64,
    /// Source rows that could not become records (no key, not JSON); reported, skipped.
    pub invalid_rows: u64,
    /// Earlier rows of a key repeated in the source (the last row wins); reported, skipped.
    pub duplicate_keys: u64,
    /// The first skipped rows, unusable or repeated, in source order: at most
    /// [`MAX_SKIPPED_ROWS_KEPT`] of the `invalid_rows + duplicate_keys` there were, so
    /// that a source of millions of bad rows costs no more memory (or history) than this.
    #[serde(default)]
    pub skipped_rows: Vec<InvalidRow>,
    /// Records the destination already holds with the same data (mode "changed").
    pub unchanged: u64,
    /// Permanent records whose data has not changed: held for a person.
    pub held: u64,
    /// `behavior = "update"`: records never delivered, so not at the destination; skipped.
    #[serde(default)]
    pub not_at_destination: u64,
    /// `behavior = "insert"`: records delivered before; skipped.
    #[serde(default)]
    pub already_at_destination: u64,
    /// `behavior = "mirror"`: records delivered before and absent from the source, sent
    /// as deletes.
    #[serde(default)]
    pub deletes: u64,
    /// Deletes the destination confirmed; the ledger forgot those records.
    #[serde(default)]
    pub deleted: u64,
    /// `behavior = "mirror"`: failed records never delivered that the source no longer
    /// has; the ledger forgot them, so that no retry creates what the source removed.
    #[serde(default)]
    pub failures_forgotten: u64,
    /// Deletes a mirror run did not send because a limit withheld them (`max_deletes`,
    /// `--allow-deletes`), or the records a previous destination holds that the source no
    /// longer has. 0 when an incomplete read withheld them: which records are
    /// gone cannot be counted then, so whether deletes were withheld is
    /// `deletes_withheld_because`, never this count.
    #[serde(default)]
    pub deletes_withheld: u64,
    /// Why a mirror run sent no deletes (an incomplete read, a limit); `None` when it
    /// withheld none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletes_withheld_because: Option<String>,
    pub delivered: u64,
    pub rejected: u64,
    pub permanent: u64,
    /// Read (or deletes sent) but not settled: they are sent again by a later run.
    pub pending: u64,
    /// Requests that carried records (each send of a batch, every resend included; not
    /// those the host refused to send).
    pub requests: u64,
    /// Requests to the OAuth2 token endpoint (the first token and each renewal); a
    /// destination that serves both counts `requests + token_requests`.
    #[serde(default)]
    pub token_requests: u64,
    /// Record sends repeated in this run (retry verdicts, transient failures).
    pub retries: u64,
    pub rate_limit_waits: u64,
    pub rate_limit_wait_ms: u64,
    pub bisections: u64,
    pub transient_failures: u64,
    pub auth_renewals: u64,
    /// Time spent inside the connector (precheck, build-request, classify), summed over
    /// workers.
    pub connector_ms: u64,
    pub elapsed_ms: u64,
}

impl RunSummary {
    /// The summary of a run that could not start (bad settings, missing credentials), so
    /// that the run history shows it too.
    pub fn not_started(sync: &str, run_id: &str, started_at_ms: u64, error: String) -> Self {
        RunSummary {
            sync: sync.to_string(),
            run_id: run_id.to_string(),
            started_at_ms,
            ended_at_ms: crate::clock::now_ms(),
            outcome: Outcome::Failed,
            error: Some(error),
            ..RunSummary::default()
        }
    }
}

/// How many skipped rows a run (or a plan) keeps to report; the rest are counted, and
/// logged one by one at level info.
pub const MAX_SKIPPED_ROWS_KEPT: usize = 100;

/// A source row that was skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidRow {
    /// Its line (a file, a command's output) or row number (a query), from 1.
    pub line: u64,
    pub reason: String,
    /// The source file, when the source is one: a script finds the row without the
    /// config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<std::path::PathBuf>,
}

pub struct RunReport {
    pub summary: RunSummary,
    /// What a row's position counts in this source: `line` for a file or a command's
    /// output, `row` for a query's rows.
    pub position: &'static str,
}
