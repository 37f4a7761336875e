//! Run history: every run's summary, kept in the state directory, for `sluice runs`.

use anyhow::Result;

use crate::engine::RunSummary;

/// Every run of every sync of one state directory, oldest first.
pub struct History {
    tree: sled::Tree,
}

impl History {
    pub fn new(tree: sled::Tree) -> Self {
        History { tree }
    }

    pub fn record(&self, summary: &RunSummary) -> Result<()> {
        let mut key = summary.started_at_ms.to_be_bytes().to_vec();
        key.extend_from_slice(summary.run_id.as_bytes());
        self.tree.insert(key, serde_json::to_vec(summary)?)?;
        Ok(())
    }

    /// Runs, newest first, of `sync` (or all), at most `limit`.
    pub fn list(&self, sync: Option<&str>, limit: usize) -> Result<Vec<RunSummary>> {
        let mut out = Vec::new();
        for item in self.tree.iter().rev() {
            let (_, value) = item?;
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
