//! Run history: every run's summary, kept in the state directory, for `sluice runs`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use crate::engine::RunSummary;
use crate::ledger::{Ledger, Tree, storage_error};

/// Every run of every sync of one state directory, oldest first.
pub struct History {
    tree: Arc<dyn Tree>,
    /// The ledger it is kept in, for messages.
    path: PathBuf,
}

impl History {
    /// The history kept in `ledger`.
    pub fn open(ledger: &Ledger) -> Result<Self> {
        Ok(History {
            tree: ledger.tree("runs")?,
            path: ledger.path().to_path_buf(),
        })
    }

    pub fn record(&self, summary: &RunSummary) -> Result<()> {
        let mut key = summary.started_at_ms.to_be_bytes().to_vec();
        key.extend_from_slice(summary.run_id.as_bytes());
        self.tree
            .insert(&key, &serde_json::to_vec(summary)?)
            .map_err(|err| storage_error(&self.path, "recording the run's summary", err))?;
        Ok(())
    }

    /// Runs, newest first, of `sync` (or all), at most `limit`.
    pub fn list(&self, sync: Option<&str>, limit: usize) -> Result<Vec<RunSummary>> {
        let mut out = Vec::new();
        // `limit` 0 is none (the check after each push would have let one through).
        if limit == 0 {
            return Ok(out);
        }
        for item in self.tree.iter_rev() {
            let (_, value) =
                item.map_err(|err| storage_error(&self.path, "reading the run history", err))?;
            let summary: RunSummary = serde_json::from_slice(&value)?;
            if sync.is_none_or(|s| s == summary.sync) {
                out.push(summary);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(sync: &str, started_at_ms: u64) -> RunSummary {
        RunSummary {
            sync: sync.to_string(),
            run_id: format!("{started_at_ms}-{sync}"),
            started_at_ms,
            ..RunSummary::default()
        }
    }

    #[test]
    fn runs_are_listed_newest_first_per_sync_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let history = History::open(&ledger).unwrap();
        for (sync, at) in [("a", 300), ("b", 100), ("a", 100), ("a", 200)] {
            history.record(&summary(sync, at)).unwrap();
        }
        let ids =
            |runs: Vec<RunSummary>| -> Vec<String> { runs.into_iter().map(|r| r.run_id).collect() };
        assert_eq!(
            ids(history.list(Some("a"), 10).unwrap()),
            ["300-a", "200-a", "100-a"]
        );
        assert_eq!(ids(history.list(None, 2).unwrap()), ["300-a", "200-a"]);
        assert_eq!(ids(history.list(Some("b"), 10).unwrap()), ["100-b"]);
        assert!(history.list(None, 0).unwrap().is_empty(), "0 is none");
    }
}
