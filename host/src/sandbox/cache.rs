//! On-disk cache of compiled components.
//!
//! Compiling a component with Cranelift takes far longer than loading the machine code
//! it produced, so each compiled artifact is kept, keyed by the component's content hash
//! and the engine's compatibility hash: a changed component, a new Wasmtime or different
//! engine settings all miss the cache instead of loading something incompatible.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_hash: u64,
}

impl ComponentCache {
    /// A cache in `dir`; `None` compiles every time (still correct, only slower).
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        ComponentCache {
            dir,
            engine_hash: hasher.finish(),
        }
    }

    /// The compiled form of `wasm`, from the cache when it holds one.
    pub fn load(&self, engine: &Engine, wasm: &[u8]) -> Result<Component> {
        let Some(dir) = &self.dir else {
            return Component::new(engine, wasm).map_err(Into::into);
        };
        let path = dir.join(self.file_name(wasm));
        // Read into memory rather than mapped: a mapped file truncated by someone else
        // would crash the process.
        if let Ok(bytes) = std::fs::read(&path) {
            // SAFETY: the file was written by `serialize` below from a component compiled
            // by an engine with the same compatibility hash (it is in the file name), in a
            // directory only Sluice writes to. A truncated or corrupt file is rejected by
            // Wasmtime's own header checks, and then recompiled.
            match unsafe { Component::deserialize(engine, &bytes) } {
                Ok(component) => return Ok(component),
                Err(err) => {
                    tracing::warn!(path = %path.display(), "ignoring unusable cached component: {err}")
                }
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Err(err) = store(&path, &component.serialize()?) {
            // The cache only saves time: a read-only or full disk must not fail the run.
            tracing::warn!(path = %path.display(), "could not cache compiled component: {err:#}");
        }
        Ok(component)
    }

    fn file_name(&self, wasm: &[u8]) -> String {
        let digest = Sha256::digest(wasm);
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}-{:016x}.cwasm", self.engine_hash)
    }
}

/// Writes through a temporary file and a rename, so that a concurrent reader (another
/// process loading the same connector) never sees half a file.
fn store(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("cache path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Unique per process and per call: two threads of one process may store at once.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}
