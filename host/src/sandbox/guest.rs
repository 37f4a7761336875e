//! What a connector instance can reach: a WASI context with nothing in it, a log, and a
//! memory budget.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The state of one connector instance's store.
pub struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) memory: MemoryBudget,
    label: Arc<str>,
}

impl GuestState {
    /// `label` names the connector (and sync) in every log line the guest causes.
    pub fn new(label: Arc<str>, memory_limit: usize) -> Self {
        // Guest toolchains import WASI, so it is linked, but the context grants nothing:
        // no preopened directories, no environment, no arguments, no sockets, no stdin.
        let wasi = WasiCtxBuilder::new()
            .stdout(GuestOutput::new(label.clone(), "stdout"))
            .stderr(GuestOutput::new(label.clone(), "stderr"))
            .build();
        GuestState {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryBudget::new(memory_limit),
            label,
        }
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// The level of a log line a connector writes, whatever WIT version it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl GuestState {
    /// A connector's log line, tagged with the connector (and sync).
    pub fn log(&mut self, level: LogLevel, message: &str) {
        let connector = &*self.label;
        match level {
            LogLevel::Trace => tracing::trace!(target: "sluice::connector", connector, "{message}"),
            LogLevel::Debug => tracing::debug!(target: "sluice::connector", connector, "{message}"),
            LogLevel::Info => tracing::info!(target: "sluice::connector", connector, "{message}"),
            LogLevel::Warn => tracing::warn!(target: "sluice::connector", connector, "{message}"),
            LogLevel::Error => tracing::error!(target: "sluice::connector", connector, "{message}"),
        }
    }
}

/// Caps an instance's linear memory. Unlike a plain `StoreLimits`, it remembers that the
/// cap was hit, so the host can say "memory limit exceeded" rather than "trapped".
pub struct MemoryBudget {
    limit: usize,
    pub exceeded: bool,
}

impl MemoryBudget {
    fn new(limit: usize) -> Self {
        MemoryBudget {
            limit,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryBudget {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (wanted {desired})",
                self.limit
            );
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; a million is far beyond any real connector.
        Ok(desired <= 1_000_000)
    }
}

/// A guest's stdout or stderr: each complete line becomes a log line tagged with the
/// connector, so `println!` debugging in a connector shows up where operators look.
#[derive(Clone)]
struct GuestOutput {
    label: Arc<str>,
    stream: &'static str,
}

impl GuestOutput {
    fn new(label: Arc<str>, stream: &'static str) -> Self {
        GuestOutput { label, stream }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter {
            out: self.clone(),
            pending: Vec::new(),
        })
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            out: self.clone(),
            pending: Vec::new(),
        })
    }
}

/// Most bytes of one unfinished line kept before it is logged anyway.
const MAX_LINE: usize = 16 * 1024;

struct LineWriter {
    out: GuestOutput,
    pending: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
        if self.pending.len() > MAX_LINE {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }

    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        tracing::info!(
            target: "sluice::connector",
            connector = &*self.out.label,
            stream = self.out.stream,
            "{text}"
        );
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.emit(&line);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
