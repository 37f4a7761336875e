//! Every set of secrets alive in the process, so that the log's writer scrubs each line
//! of all of them: a log line may quote what a connector said, or a destination's answer,
//! through paths that were scrubbed once already. A last pass at the one place every
//! line goes through means no new path can forget.

use std::borrow::Cow;
use std::io::Write;
use std::sync::{Arc, Mutex, RwLock, Weak};

use super::Scrubber;

type Shared = RwLock<Arc<Scrubber>>;

static LIVE: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());

/// Adds a set of secrets; it leaves by itself when its last holder drops it.
pub(super) fn register(current: &Arc<Shared>) {
    let mut live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    live.retain(|weak| weak.strong_count() > 0);
    live.push(Arc::downgrade(current));
}

/// `bytes` scrubbed of every secret alive in the process. Nothing may log while it holds
/// a set's lock (the writer would wait on it).
pub fn scrub_all(bytes: &[u8]) -> Cow<'_, [u8]> {
    let scrubbers: Vec<Arc<Scrubber>> = {
        let live = LIVE.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        live.iter()
            .filter_map(Weak::upgrade)
            .map(|shared| {
                shared
                    .read()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone()
            })
            .filter(|scrubber| !scrubber.is_empty())
            .collect()
    };
    let mut out = Cow::Borrowed(bytes);
    for scrubber in scrubbers {
        if let Cow::Owned(scrubbed) = scrubber.scrub(&out) {
            out = Cow::Owned(scrubbed);
        }
    }
    out
}

/// Standard error, each write scrubbed of every live secret: the log's writer. The
/// logger writes each line in one call, so a secret is never split across two.
pub struct ScrubbedStderr;

impl Write for ScrubbedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().write_all(&scrub_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
