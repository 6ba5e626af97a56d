//! The plugins shipped with the User Service, built from `plugin/` by this crate's build script
//! and embedded, so the service runs on a fresh clone with no plugin directory prepared.

use std::{io, path::Path};

/// A plugin component built from this workspace.
#[derive(Debug, Clone, Copy)]
pub struct BundledPlugin {
    /// The plugin's name, which is also its file stem in a plugin directory.
    pub name: &'static str,
    /// Where the build left the component (useful to tests and benchmarks).
    pub path: &'static str,
    /// The component itself.
    pub bytes: &'static [u8],
}

impl BundledPlugin {
    /// The file name this plugin has in a plugin directory: `<name>.wasm`.
    pub fn file_name(&self) -> String {
        format!("{}.wasm", self.name)
    }

    /// Writes the plugin into `dir` as `<name>.wasm` unless a file of that name is there already
    /// (an operator's newer version wins). Returns whether it wrote.
    pub fn install_if_missing(&self, dir: &Path) -> io::Result<bool> {
        let target = dir.join(self.file_name());
        if target.exists() {
            return Ok(false);
        }
        std::fs::create_dir_all(dir)?;
        std::fs::write(&target, self.bytes)?;
        Ok(true)
    }
}

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
