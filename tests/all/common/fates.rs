//! The fates a run settled: a sink that remembers each record's last one, and predicates
//! for picking them.

use std::collections::BTreeMap;
use std::sync::Mutex;

use sluice::engine::{Fate, Settled, Sink};

/// Every record's last fate, by key.
#[derive(Default)]
pub struct Fates(Mutex<BTreeMap<String, (Fate, u32)>>);

impl Sink for Fates {
    fn settle(&self, settled: &[Settled]) -> anyhow::Result<()> {
        let mut fates = self.0.lock().unwrap();
        for s in settled {
            fates.insert(s.record.key.clone(), (s.fate.clone(), s.attempts));
        }
        Ok(())
    }
}

impl Fates {
    pub fn all(&self) -> BTreeMap<String, (Fate, u32)> {
        self.0.lock().unwrap().clone()
    }

    /// Keys whose fate matches `pred`.
    pub fn keys(&self, pred: impl Fn(&Fate) -> bool) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, (f, _))| pred(f))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Key -> failure code of rejected, permanent or pending records.
    pub fn codes(&self) -> BTreeMap<String, String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(k, (f, _))| match f {
                Fate::Rejected(f) | Fate::Permanent(f) => Some((k.clone(), f.code.clone())),
                Fate::Pending(Some(f)) => Some((k.clone(), f.code.clone())),
                _ => None,
            })
            .collect()
    }
}

pub fn is_delivered(f: &Fate) -> bool {
    matches!(f, Fate::Delivered(_))
}
pub fn is_rejected(f: &Fate) -> bool {
    matches!(f, Fate::Rejected(_))
}
pub fn is_permanent(f: &Fate) -> bool {
    matches!(f, Fate::Permanent(_))
}
pub fn is_pending(f: &Fate) -> bool {
    matches!(f, Fate::Pending(_))
}
