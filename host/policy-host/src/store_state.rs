//! The per-decision store data: what a plugin instance can see of the host.

use crate::{
    bindings::{logging, settings},
    egress::redact::Redactor,
    wasi_http::{hooks::EgressHooks, outgoing_handler::GatewayOutgoing},
};
use std::{collections::BTreeMap, sync::Arc};
use wasmtime::{ResourceLimiter, component::ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView, p2::pipe::MemoryOutputPipe};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Most log lines one decision may write; the rest are dropped (a plugin can't flood logs).
const MAX_LOG_LINES: u32 = 32;
/// Longest log line kept, in bytes.
const MAX_LOG_LINE_BYTES: usize = 1024;
/// How much of a plugin's stderr (e.g. a panic message) is kept for error reports.
const STDERR_CAPTURE_BYTES: usize = 4096;

/// State of one store, created fresh for every decision.
pub struct PluginState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    hooks: EgressHooks,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    /// The memory cap and whether the plugin ran into it.
    pub(crate) memory: MemoryCap,
    settings: Arc<BTreeMap<String, String>>,
    /// `slot: name version`, for log lines.
    label: Arc<str>,
    log_lines: u32,
    /// Scrubs secrets from what the plugin logs.
    redactor: Arc<Redactor>,
}

impl PluginState {
    /// A state with no filesystem, no environment, no sockets and no inherited stdio: WASI
    /// denies all of those by default. Stderr is captured so a panic message can be reported.
    pub fn new(
        settings: Arc<BTreeMap<String, String>>,
        label: Arc<str>,
        memory_bytes: usize,
        hooks: EgressHooks,
        redactor: Arc<Redactor>,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
        let wasi = wasmtime_wasi::WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            hooks,
            table: ResourceTable::new(),
            stderr,
            memory: MemoryCap {
                limit_bytes: memory_bytes,
                hit: false,
            },
            settings,
            label,
            log_lines: 0,
            redactor,
        }
    }

    /// What the plugin wrote to stderr (its panic message, typically), lossily decoded.
    pub fn captured_stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents())
            .trim()
            .to_owned()
    }
}

impl WasiView for PluginState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl PluginState {
    /// The view the gateway's outgoing handler works on.
    pub fn outgoing(&mut self) -> GatewayOutgoing<'_> {
        GatewayOutgoing {
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl WasiHttpView for PluginState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

impl settings::Host for PluginState {
    fn get(&mut self, key: String) -> Option<String> {
        self.settings.get(&key).cloned()
    }
}

impl logging::Host for PluginState {
    fn log(&mut self, level: logging::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            return;
        }
        // The plugin's text: no secret in any encoding, no control characters (no forged log
        // lines), bounded.
        let message: String = self
            .redactor
            .redact(&message)
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let message = crate::loaded::cap_text(message, MAX_LOG_LINE_BYTES);
        let plugin = &*self.label;
        match level {
            logging::Level::Trace => tracing::trace!(plugin, "{message}"),
            logging::Level::Debug => tracing::debug!(plugin, "{message}"),
            logging::Level::Info => tracing::info!(plugin, "{message}"),
            logging::Level::Warn => tracing::warn!(plugin, "{message}"),
            logging::Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl crate::bindings::types::Host for PluginState {}

/// Caps linear memory growth and remembers whether the cap was hit, so the failure can be
/// reported as [`crate::PluginError::MemoryLimit`] rather than as a generic trap.
pub struct MemoryCap {
    /// The cap in bytes.
    pub limit_bytes: usize,
    /// Whether a growth was refused.
    pub hit: bool,
}

/// Raised (as a trap) when a plugin grows past its memory cap.
#[derive(Debug)]
pub struct MemoryCapExceeded;

impl std::fmt::Display for MemoryCapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("memory cap exceeded")
    }
}

impl std::error::Error for MemoryCapExceeded {}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes {
            self.hit = true;
            return Err(wasmtime::Error::new(MemoryCapExceeded));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 16)
    }
}
