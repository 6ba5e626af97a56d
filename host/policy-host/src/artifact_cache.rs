//! Compiled components cached on disk by content hash, so a restart (or a rollback to a file
//! seen before) skips Cranelift.

use sha2::{Digest, Sha256};
use std::{
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
};
use wasmtime::{Engine, component::Component};

/// A directory of precompiled components: `<sha256>-<engine fingerprint>.cwasm`.
///
/// The fingerprint covers the wasmtime version and every engine setting that affects code,
/// so an artifact is only ever loaded by an engine that could have produced it. The directory
/// must be writable only by the service: its files are loaded as native code.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    fingerprint: String,
}

impl ArtifactCache {
    /// A cache in `dir` for components compiled by `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir: dir.into(),
            fingerprint: format!("{:016x}", hasher.finish()),
        }
    }

    fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{}.cwasm", self.fingerprint))
    }

    /// The component for `bytes`: from the cache when present and loadable, else compiled and
    /// stored. A cache that can't be read or written only costs a compilation.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<Component> {
        let path = self.path_for(sha256);
        if path.is_file() {
            // SAFETY: the cache directory is the service's own (see the type's docs), entries
            // are named by the source's hash and the engine's fingerprint, and are written
            // atomically (rename), so this file is an artifact this engine produced for these bytes.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "ignoring unusable cached artifact");
                }
            }
        }
        let artifact = engine.precompile_component(bytes)?;
        if let Err(error) = write_atomically(&self.dir, &path, &artifact) {
            tracing::warn!(dir = %self.dir.display(), %error, "could not cache compiled plugin");
        }
        // SAFETY: `artifact` was produced just above by this same engine.
        unsafe { Component::deserialize(engine, &artifact) }
    }
}

fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

/// Lower-case hex sha-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
