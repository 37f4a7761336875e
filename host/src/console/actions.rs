//! What people did through the console, kept in the state (a tree per sync): who, when,
//! what, and what came of it. Shown beside the records an action named, and on a sync's
//! failures page.

use serde::{Deserialize, Serialize};

use anyhow::Result;

use crate::ledger::Ledger;

/// One action.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Action {
    pub at_ms: u64,
    /// The name the person gave when signing in, or the token's role.
    pub by: String,
    /// `retry`, `resolve` or `run`.
    pub action: String,
    /// The records it named (empty for a code or a run).
    #[serde(default)]
    pub keys: Vec<String>,
    /// The failure code it named, if any.
    #[serde(default)]
    pub code: Option<String>,
    /// What came of it, in a line.
    pub result: String,
}

impl Action {
    /// As the API and the pages show it: its time as RFC 3339.
    pub fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("an action serializes");
        value["at"] = crate::report::rfc3339(Some(self.at_ms)).into();
        value
    }
}

fn tree_name(sync: &str) -> String {
    format!("console-actions:{sync}")
}

/// Keeps `action`, in order: by time, and two of one millisecond in the order this
/// process kept them (a random suffix ordered them by chance).
pub fn record(ledger: &Ledger, sync: &str, action: &Action) -> Result<()> {
    static KEPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tree = ledger.tree(&tree_name(sync))?;
    let seq = KEPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let key = format!("{:020}-{seq:020}", action.at_ms);
    tree.insert(key.as_bytes(), &serde_json::to_vec(action)?)?;
    Ok(())
}

/// The latest actions of `sync` that `wanted` keeps, newest first, at most `limit`.
pub fn latest(
    ledger: &Ledger,
    sync: &str,
    limit: usize,
    wanted: impl Fn(&Action) -> bool,
) -> Result<Vec<Action>> {
    let tree = ledger.tree(&tree_name(sync))?;
    let mut out = Vec::new();
    for item in tree.iter_rev() {
        let (_, value) = item?;
        let action: Action = serde_json::from_slice(&value)?;
        if wanted(&action) {
            out.push(action);
            if out.len() >= limit {
                break;
            }
        }
    }
    Ok(out)
}
