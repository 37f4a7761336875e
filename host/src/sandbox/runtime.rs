//! The engine every connector shares, and a loaded connector ready to instantiate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, Store};

use super::bindings::{DestinationConnector, DestinationConnectorPre};
use super::cache::ComponentCache;
use super::guest::GuestState;
use super::instance::{ConnectorInstance, GuestError};

/// How often the engine's epoch advances; the granularity of call time limits.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The WIT package versions this host can load, newest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.1.0"];

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
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        DestinationConnector::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;

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
        self.world_version(&component)
            .with_context(|| format!("connector `{name}` cannot be loaded"))?;
        self.link(name, &component, limits)
    }

    /// The compiled form of `wasm`, from the cache when it holds one.
    pub(crate) fn compile(&self, name: &str, wasm: &[u8]) -> Result<Component> {
        self.cache
            .load(&self.engine, wasm)
            .with_context(|| format!("connector `{name}` is not a valid WebAssembly component"))
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

    /// Links a compiled component against the sandbox's imports.
    pub(crate) fn link(
        &self,
        name: &str,
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
        let pre = DestinationConnectorPre::new(pre)
            .map_err(anyhow::Error::from)
            .with_context(|| {
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

/// Why a component's exports are not a world this host loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorldError {
    /// No `sluice:connector/destination` export at all; these are its exports.
    NotExported { exports: Vec<String> },
    /// Built against a version of the package this host does not support.
    Unsupported { found: String },
}

impl std::fmt::Display for WorldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorldError::NotExported { exports } => write!(
                f,
                "it does not export `sluice:connector/destination` (its exports: {}); build it \
                 against the `destination-connector` world in wit/",
                if exports.is_empty() {
                    "none".to_string()
                } else {
                    exports.join(", ")
                }
            ),
            WorldError::Unsupported { found } => write!(
                f,
                "it was built against sluice:connector@{found}, and this Sluice supports {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        }
    }
}

impl std::error::Error for WorldError {}

/// A compiled, linked connector. Cheap to instantiate: one instance per worker.
pub struct Connector {
    name: Arc<str>,
    engine: Engine,
    pre: DestinationConnectorPre<GuestState>,
    limits: SandboxLimits,
}

impl Connector {
    pub fn name(&self) -> &str {
        &self.name
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
