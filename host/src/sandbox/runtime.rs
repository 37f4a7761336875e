//! The engine every connector shares, and a loaded connector ready to instantiate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store};

use super::cache::ComponentCache;
use super::guest::GuestState;
use super::instance::{ConnectorInstance, GuestError};
pub use super::wit::SUPPORTED_VERSIONS;
use super::wit::{self, ConnectorPre};

/// How often the engine's epoch advances; the granularity of call time limits.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The limits every call into one connector runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxLimits {
    /// Most bytes of linear memory an instance may have.
    pub memory: usize,
    /// Longest one call (configure, precheck, build-request, classify) may run.
    pub call_timeout: Duration,
}

impl Default for SandboxLimits {
    fn default() -> Self {
        SandboxLimits {
            memory: 64 * 1024 * 1024,
            call_timeout: Duration::from_secs(1),
        }
    }
}

/// Compiles and links connectors. One per process: the engine's compiled code, its epoch
/// ticker and its linker are shared by every connector and every instance.
pub struct Runtime {
    engine: Engine,
    linker: Linker<GuestState>,
    cache: ComponentCache,
}

impl Runtime {
    /// `cache_dir` keeps compiled components between runs; `None` disables the cache.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        // Time limits: a call traps when the epoch passes its deadline, which costs far
        // less than fuel metering on every instruction.
        config.epoch_interruption(true);
        let engine = Engine::new(&config)?;

        let mut linker = Linker::new(&engine);
        wit::add_to_linker(&mut linker)?;

        // The ticker holds only a weak reference: it stops once the engine is gone.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch ticker")?;

        Ok(Runtime {
            cache: ComponentCache::new(&engine, cache_dir),
            engine,
            linker,
        })
    }

    /// Compiles (or loads from the cache) and links the component `wasm`, naming it
    /// `name` in every error and log line.
    pub fn load(&self, name: &str, wasm: &[u8], limits: SandboxLimits) -> Result<Connector> {
        let component = self.compile(name, wasm)?;
        let version = self
            .world_version(&component)
            .with_context(|| format!("connector `{name}` cannot be loaded"))?;
        self.link(name, &version, &component, limits)
    }

    /// The compiled form of `wasm`, from the cache when it holds one. A file that is not
    /// a component at all is told in one line from its first bytes; a component Wasmtime
    /// refuses keeps Wasmtime's reason, on one line.
    pub(crate) fn compile(&self, name: &str, wasm: &[u8]) -> Result<Component> {
        if let Some(kind) = not_a_component(wasm) {
            return Err(anyhow::Error::new(kind)).with_context(|| {
                format!("connector `{name}` is not a valid WebAssembly component")
            });
        }
        self.cache.load(&self.engine, wasm).map_err(|err| {
            anyhow::anyhow!(
                "connector `{name}` is not a valid WebAssembly component: {}",
                one_line(&format!("{err:#}"))
            )
        })
    }

    /// Which version of `sluice:connector/destination` the component exports, read before
    /// instantiation so that an unsupported one is refused with a message an author can
    /// act on.
    pub(crate) fn world_version(&self, component: &Component) -> Result<String, WorldError> {
        const PREFIX: &str = "sluice:connector/destination@";
        let ty = component.component_type();
        let exported: Vec<String> = ty
            .exports(&self.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let Some(found) = exported.iter().find_map(|name| name.strip_prefix(PREFIX)) else {
            return Err(WorldError::NotExported { exports: exported });
        };
        if !SUPPORTED_VERSIONS.contains(&found) {
            return Err(WorldError::Unsupported {
                found: found.to_string(),
            });
        }
        Ok(found.to_string())
    }

    /// Links a compiled component against the sandbox's imports, as the `version` of
    /// the WIT package it exports (from [`Runtime::world_version`]).
    pub(crate) fn link(
        &self,
        name: &str,
        version: &str,
        component: &Component,
        limits: SandboxLimits,
    ) -> Result<Connector> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .with_context(|| {
                format!("connector `{name}` imports something the sandbox does not provide")
            })?;
        let pre = ConnectorPre::new(version, pre).with_context(|| {
            format!("connector `{name}` does not implement the destination-connector world")
        })?;
        Ok(Connector {
            name: name.into(),
            engine: self.engine.clone(),
            pre,
            limits,
        })
    }
}

/// A file given as a component that is something else, told from its first bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NotAComponent(pub String);

/// The WebAssembly binary magic, `\0asm`.
const WASM_MAGIC: &[u8] = b"\0asm";

/// `None` for what may be a component (Wasmtime decides); otherwise what the file is.
pub fn not_a_component(bytes: &[u8]) -> Option<NotAComponent> {
    let what = |text: &str| Some(NotAComponent(text.to_string()));
    if let Some(header) = bytes.strip_prefix(WASM_MAGIC) {
        // Then a 16-bit version and a 16-bit layer: layer 0 is a core module, layer 1 a
        // component.
        return match header.get(..4) {
            Some([_, _, 0, 0]) => what(
                "it is a core WebAssembly module; make it a component (build for the \
                 wasm32-wasip2 target, or `wasm-tools component new`)",
            ),
            _ => None,
        };
    }
    let starts = |prefix: &[u8]| bytes.starts_with(prefix);
    if bytes.is_empty() {
        return what("the file is empty");
    }
    if starts(b"\x7fELF") {
        return what("the file is an ELF executable or library (a native program)");
    }
    if starts(b"MZ") {
        return what("the file is a Windows executable");
    }
    if [
        b"\xfe\xed\xfa\xce",
        b"\xfe\xed\xfa\xcf",
        b"\xce\xfa\xed\xfe",
        b"\xcf\xfa\xed\xfe",
        b"\xca\xfe\xba\xbe",
    ]
    .iter()
    .any(|magic| starts(&magic[..]))
    {
        return what("the file is a Mach-O executable (a native program)");
    }
    if starts(b"PK\x03\x04") || starts(b"\x1f\x8b") {
        return what("the file is a compressed archive; unpack the .wasm from it");
    }
    let head = &bytes[..bytes.len().min(512)];
    // Text, unless a byte is not UTF-8 (a character cut at the end of `head` is fine).
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        Err(err) if err.error_len().is_none() => {
            std::str::from_utf8(&head[..err.valid_up_to()]).ok()
        }
        Err(_) => None,
    };
    match text {
        Some(text) if !text.contains('\0') => {
            let start = text.trim_start();
            if start.starts_with("(module") || start.starts_with("(component") {
                what(
                    "the file is WebAssembly text (WAT); compile it to a binary component \
                     (`wasm-tools parse`)",
                )
            } else {
                what("the file is text")
            }
        }
        _ => what("the file does not start with the WebAssembly magic bytes (`\\0asm`)"),
    }
}

/// An error's text on one line: parser errors list bytes one per line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Why a component's exports are not a world this host loads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorldError {
    /// No `sluice:connector/destination` export at all; these are its exports.
    #[error(
        "it does not export `sluice:connector/destination` (its exports: {}); build it \
         against the `destination-connector` world in wit/",
        listed(exports)
    )]
    NotExported { exports: Vec<String> },
    /// Built against a version of the package this host does not support.
    #[error(
        "it was built against sluice:connector@{found}, and this Sluice supports {}",
        SUPPORTED_VERSIONS.join(", ")
    )]
    Unsupported { found: String },
}

fn listed(exports: &[String]) -> String {
    if exports.is_empty() {
        "none".to_string()
    } else {
        exports.join(", ")
    }
}

/// A compiled, linked connector. Cheap to instantiate: one instance per worker.
pub struct Connector {
    name: Arc<str>,
    engine: Engine,
    pre: ConnectorPre,
    limits: SandboxLimits,
}

impl Connector {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version of `sluice:connector` it was built against.
    pub fn version(&self) -> &'static str {
        self.pre.version()
    }

    pub fn limits(&self) -> SandboxLimits {
        self.limits
    }

    /// A fresh instance with its own memory; `context` (for example the sync's name) is
    /// added to its log lines.
    pub fn instantiate(&self, context: &str) -> Result<ConnectorInstance, GuestError> {
        let label: Arc<str> = if context.is_empty() {
            self.name.clone()
        } else {
            format!("{}/{context}", self.name).into()
        };
        let mut store = Store::new(&self.engine, GuestState::new(label, self.limits.memory));
        store.limiter(|state| &mut state.memory);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(ticks(self.limits.call_timeout));
        match self.pre.instantiate(&mut store) {
            Ok(bindings) => Ok(ConnectorInstance::new(
                self.name.clone(),
                store,
                bindings,
                self.limits,
            )),
            Err(err) => Err(GuestError::from_wasmtime(
                &self.name,
                "instantiate",
                &store,
                self.limits,
                err,
            )),
        }
    }
}

/// The epoch deadline for a call time limit, rounded up to whole ticks.
pub(super) fn ticks(limit: Duration) -> u64 {
    // One tick more: the epoch may advance right after the deadline is set.
    limit.as_nanos().div_ceil(EPOCH_TICK.as_nanos()) as u64 + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_file_is_when_it_is_not_a_component() {
        let said = |bytes: &[u8]| not_a_component(bytes).map(|k| k.to_string());
        assert_eq!(said(b"\0asm\x0d\0\x01\0"), None, "a component");
        assert_eq!(said(b"\0asm\x0e\0\x01\0"), None, "Wasmtime decides");
        let cases: [(&[u8], &str); 7] = [
            (b"\0asm\x01\0\0\0", "core WebAssembly module"),
            (b"\x7fELF\x02\x01\x01\0\0", "ELF executable"),
            (b"hello, world\n", "is text"),
            (b"  (component (core module))", "WebAssembly text (WAT)"),
            (b"", "is empty"),
            (b"\x1f\x8b\x08\0", "compressed archive"),
            (b"\x00\x01\x02\x03\xff", "magic bytes"),
        ];
        for (bytes, expected) in cases {
            let text = said(bytes).unwrap();
            assert!(text.contains(expected), "{text}");
            assert!(!text.contains('\n'));
        }
    }
}
