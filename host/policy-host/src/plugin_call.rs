//! The call template the plugin kinds share: refuse oversized input before any instance
//! exists, then run one guest call in a fresh store (memory cap and deadline armed) under the
//! host's timer, and turn a failure into a typed [`PluginError`]. Each kind supplies only its
//! input conversion and the export it calls.

use crate::{
    engine::PolicyEngine, error::PluginError, loaded::LoadedPlugin, store_state::PluginState,
};
use wasmtime::Store;

/// Refuses an input of `size` bytes over the engine's `max-input-bytes`.
pub(crate) fn check_input_size(engine: &PolicyEngine, size: usize) -> Result<(), PluginError> {
    let limit = engine.limits().max_input_bytes;
    if size > limit {
        return Err(PluginError::InputTooLarge { size, limit });
    }
    Ok(())
}

/// Runs `call` (instantiate, then call one export) in a fresh store of `plugin`, within the
/// decision deadline; a trap, a memory-cap hit or the deadline becomes a [`PluginError`].
pub(crate) async fn run<T>(
    engine: &PolicyEngine,
    plugin: &LoadedPlugin,
    call: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<T>,
) -> Result<T, PluginError> {
    let mut store = plugin.new_store(engine);
    match plugin.within_deadline(engine, call(&mut store)).await? {
        Ok(value) => Ok(value),
        Err(error) => Err(plugin.classify(engine, &store, error)),
    }
}
