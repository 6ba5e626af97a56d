//! Watches the plugin directory and reloads a slot when its `<name>.wasm` changes.
//!
//! Events are debounced: a reload starts once a file has been quiet for [`SETTLE`], so a
//! copy in progress is not loaded half-written (and if it were, validation would reject it and
//! the completed write would trigger another reload). Writing `<name>.wasm.tmp` and renaming
//! it over `<name>.wasm` is the reliable way to publish a plugin.

use crate::catalog::Catalog;
use notify::{EventKind, RecursiveMode, Watcher};
use std::{collections::BTreeSet, path::Path, sync::Arc, time::Duration};
use tokio::{sync::mpsc, task::JoinHandle};

/// How long a file must be quiet before it is loaded.
pub const SETTLE: Duration = Duration::from_millis(150);

/// A running watcher; dropping it stops watching.
pub struct PluginDirWatcher {
    _watcher: notify::RecommendedWatcher,
    task: JoinHandle<()>,
}

impl Drop for PluginDirWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the catalog's directory. Must be called inside a tokio runtime.
pub fn watch(catalog: Arc<Catalog>) -> notify::Result<PluginDirWatcher> {
    let (sender, mut receiver) = mpsc::unbounded_channel::<String>();
    let mut watcher =
        notify::recommended_watcher(move |event: notify::Result<notify::Event>| match event {
            Ok(event) if matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_)) => {
                for name in event.paths.iter().filter_map(|path| plugin_name(path)) {
                    let _ = sender.send(name);
                }
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "plugin directory watch error"),
        })?;
    std::fs::create_dir_all(catalog.dir())?;
    watcher.watch(catalog.dir(), RecursiveMode::NonRecursive)?;

    let task = tokio::spawn(async move {
        while let Some(first) = receiver.recv().await {
            let mut pending = BTreeSet::from([first]);
            // Wait until the directory has been quiet for SETTLE.
            while let Ok(Some(name)) = tokio::time::timeout(SETTLE, receiver.recv()).await {
                pending.insert(name);
            }
            for name in pending {
                if catalog
                    .slot(&name)
                    .is_some_and(|slot| slot.config.enabled && slot.is_file_source())
                {
                    // Errors are recorded in the slot and logged by `reload`.
                    let _ = catalog.reload(&name).await;
                } else {
                    tracing::debug!(file = %name, "ignoring a file that is no enabled plugin slot");
                }
            }
        }
    });
    Ok(PluginDirWatcher {
        _watcher: watcher,
        task,
    })
}

/// `<dir>/password-policy.wasm` (or its signature file, `.wasm.minisig`) →
/// `password-policy`; anything else → `None`.
fn plugin_name(path: &Path) -> Option<String> {
    if path.extension()? == "minisig" {
        return plugin_name(&path.with_extension(""));
    }
    if path.extension()? != "wasm" {
        return None;
    }
    Some(path.file_stem()?.to_str()?.to_owned())
}
