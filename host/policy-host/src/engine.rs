//! The one wasmtime engine, its linkers, and the epoch ticker that enforces deadlines.

use crate::{
    artifact_cache::{ArtifactCache, engine_fingerprint},
    bindings::{logging, password_policy::PasswordPolicy, settings, types},
    egress::{EgressGateway, config::EgressConfig},
    kind::PluginKind,
    limits::RuntimeLimits,
    shared_artifact::TrustedArtifact,
    store_state::PluginState,
    wasi_http::outgoing_handler,
};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig,
    component::{Component, HasSelf, Linker},
};
use wasmtime_wasi_http::{WasiHttp, WasiHttpView};

/// Dirty pages below this size are reset with memset instead of `madvise`: faster for the
/// small amount of memory a decision touches.
const KEEP_RESIDENT_BYTES: usize = 1 << 20;

/// The part of a fiber stack kept resident between calls (the rest is returned to the OS).
const KEEP_RESIDENT_STACK_BYTES: usize = 128 << 10;

/// The engine and everything shared by all plugins.
pub struct PolicyEngine {
    engine: Engine,
    limits: RuntimeLimits,
    password_policy_linker: Linker<PluginState>,
    network_linker: Linker<PluginState>,
    gateway: Arc<EgressGateway>,
    cache: Option<ArtifactCache>,
    fingerprint: String,
    ticker_stop: Arc<AtomicBool>,
}

impl PolicyEngine {
    /// Builds the engine: pooling allocator sized from `limits`, copy-on-write memory images,
    /// epoch interruption with a background ticker every `limits.epoch_tick`.
    /// The egress gateway (built from `egress`) mediates every `wasi:http` request.
    pub fn new(
        limits: RuntimeLimits,
        cache_dir: Option<std::path::PathBuf>,
        egress: EgressConfig,
    ) -> wasmtime::Result<Self> {
        let instances = limits.max_concurrent_instances.max(1);
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 4)
            .total_tables(instances * 8)
            .total_stacks(instances)
            .max_memories_per_component(4)
            .max_memory_size(limits.memory_bytes)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 << 10)
            .async_stack_keep_resident(KEEP_RESIDENT_STACK_BYTES)
            // Find dirty pages with Linux's PAGEMAP_SCAN (6.7+) instead of resetting the whole
            // keep-resident region: a decision touches few pages.
            .pagemap_scan(Enabled::Auto);
        let mut config = Config::new();
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_init_cow(true)
            .epoch_interruption(true);
        let engine = Engine::new(&config)?;

        let mut password_policy_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut password_policy_linker)?;
        PasswordPolicy::add_to_linker::<_, HasSelf<PluginState>>(
            &mut password_policy_linker,
            |state| state,
        )?;

        // breach-check and captcha: the same, plus wasi:http (whose requests go to the gateway).
        let mut network_linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut network_linker)?;
        // wasi:http's types from wasmtime-wasi-http; its outgoing handler is ours, so that a
        // request the gateway answers at once is answered without a task (see
        // `wasi_http::outgoing_handler`).
        let http_options = wasmtime_wasi_http::p2::bindings::LinkOptions::default();
        wasmtime_wasi_http::p2::bindings::http::types::add_to_linker::<_, WasiHttp>(
            &mut network_linker,
            &http_options.into(),
            PluginState::http,
        )?;
        outgoing_handler::add_to_linker(&mut network_linker, PluginState::outgoing)?;
        types::add_to_linker::<_, HasSelf<PluginState>>(&mut network_linker, |state| state)?;
        settings::add_to_linker::<_, HasSelf<PluginState>>(&mut network_linker, |state| state)?;
        logging::add_to_linker::<_, HasSelf<PluginState>>(&mut network_linker, |state| state)?;
        let gateway = Arc::new(EgressGateway::new(egress).map_err(wasmtime::Error::msg)?);

        let ticker_stop = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), limits.epoch_tick, ticker_stop.clone())?;
        let cache = cache_dir.map(|dir| ArtifactCache::new(dir, &engine));
        let fingerprint = engine_fingerprint(&engine);
        Ok(Self {
            engine,
            limits,
            password_policy_linker,
            network_linker,
            gateway,
            cache,
            fingerprint,
            ticker_stop,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The egress gateway.
    pub fn gateway(&self) -> &Arc<EgressGateway> {
        &self.gateway
    }

    /// The per-decision limits.
    pub fn limits(&self) -> &RuntimeLimits {
        &self.limits
    }

    /// The linker for a kind: exactly the imports that kind's world grants. `None` for kinds
    /// this host cannot run yet.
    pub fn linker(&self, kind: PluginKind) -> Option<&Linker<PluginState>> {
        match kind {
            PluginKind::PasswordPolicy => Some(&self.password_policy_linker),
            PluginKind::BreachCheck | PluginKind::Captcha => Some(&self.network_linker),
        }
    }

    /// This engine's compatibility fingerprint: an artifact is shared only between engines
    /// with the same one (see [`engine_fingerprint`]).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Compiles `bytes` (component `sha256`) to an artifact other replicas can load, and keeps
    /// it in the local cache (or takes it from there). CPU-heavy: call it off the request path.
    pub fn precompile(&self, bytes: &[u8], sha256: &str) -> wasmtime::Result<TrustedArtifact> {
        if let Some(artifact) = self.cache.as_ref().and_then(|cache| cache.read(sha256)) {
            return Ok(artifact);
        }
        let artifact = TrustedArtifact::compiled_here(
            sha256.to_owned(),
            self.fingerprint.clone(),
            self.engine.precompile_component(bytes)?,
        );
        if let Some(cache) = &self.cache {
            cache.store(&artifact);
        }
        Ok(artifact)
    }

    /// Compiles `bytes` (or loads the cached artifact for `sha256`). CPU-heavy: call it off the
    /// request path.
    pub fn compile(&self, bytes: &[u8], sha256: &str) -> wasmtime::Result<Component> {
        self.compile_with(bytes, sha256, None)
    }

    /// Like [`PolicyEngine::compile`], but loads `shared` (another replica's compilation,
    /// verified) instead of compiling when it is the artifact of `sha256` for this engine; it
    /// then goes into the local cache too. An unusable one only costs the compilation.
    pub fn compile_with(
        &self,
        bytes: &[u8],
        sha256: &str,
        shared: Option<&TrustedArtifact>,
    ) -> wasmtime::Result<Component> {
        let component = match shared.and_then(|shared| self.load_shared(sha256, shared)) {
            Some(component) => component,
            None => match &self.cache {
                Some(cache) => cache.load_or_compile(&self.engine, bytes, sha256)?,
                None => Component::new(&self.engine, bytes)?,
            },
        };
        // Build the copy-on-write memory image now rather than on the first decision.
        component.initialize_copy_on_write_image()?;
        Ok(component)
    }

    fn load_shared(&self, sha256: &str, shared: &TrustedArtifact) -> Option<Component> {
        if shared.sha256() != sha256 || shared.engine() != self.fingerprint {
            tracing::warn!(
                sha256,
                artifact_sha256 = shared.sha256(),
                "a shared artifact of another component or engine; compiling instead"
            );
            metrics::counter!("plugin_shared_artifacts_total", "outcome" => "unusable")
                .increment(1);
            return None;
        }
        // The local copy, when there is one, is mapped rather than copied.
        if let Some(component) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.engine, sha256))
        {
            return Some(component);
        }
        // SAFETY: a `TrustedArtifact` was compiled by this process or its tag verified with the
        // deployment's key (see `shared_artifact`), and it is this component's compilation by an
        // engine of this fingerprint; wasmtime checks the header's compatibility again.
        match unsafe { Component::deserialize(&self.engine, shared.bytes()) } {
            Ok(component) => {
                if let Some(cache) = &self.cache {
                    cache.store(shared);
                }
                Some(component)
            }
            Err(error) => {
                tracing::warn!(sha256, %error, "a verified shared artifact does not load; compiling instead");
                metrics::counter!("plugin_shared_artifacts_total", "outcome" => "unusable")
                    .increment(1);
                None
            }
        }
    }
}

impl Drop for PolicyEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// Advances the engine's epoch every `tick`; a store's deadline is a number of ticks.
fn spawn_epoch_ticker(
    engine: Engine,
    tick: std::time::Duration,
    stop: Arc<AtomicBool>,
) -> wasmtime::Result<()> {
    thread::Builder::new()
        .name("wasm-epoch-ticker".to_owned())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(tick);
                engine.increment_epoch();
            }
        })
        .map(|_| ())
        .map_err(|error| wasmtime::Error::msg(format!("cannot start the epoch ticker: {error}")))
}
