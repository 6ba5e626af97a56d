//! Compiled components cached on disk by content hash, so a restart (or a rollback to a file
//! seen before) skips Cranelift.

use crate::shared_artifact::TrustedArtifact;
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
        Self {
            dir: dir.into(),
            fingerprint: engine_fingerprint(engine),
        }
    }

    fn path_for(&self, sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{sha256}-{}.cwasm", self.fingerprint))
    }

    /// The cached component for `sha256`, when present and loadable.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let path = self.path_for(sha256);
        if !path.is_file() {
            return None;
        }
        // SAFETY: the cache directory is the service's own (see the type's docs), entries are
        // named by the source's hash and the engine's fingerprint, and are written atomically
        // (rename) from artifacts this engine produced or verified, so this file is an artifact
        // for these bytes that this engine can load.
        match unsafe { Component::deserialize_file(engine, &path) } {
            Ok(component) => Some(component),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "ignoring unusable cached artifact");
                None
            }
        }
    }

    /// The cached artifact of `sha256` for this engine, as bytes to share with other replicas.
    pub fn read(&self, sha256: &str) -> Option<TrustedArtifact> {
        let bytes = std::fs::read(self.path_for(sha256)).ok()?;
        // The directory's files are this engine's own compilations (see the type's docs).
        Some(TrustedArtifact::compiled_here(
            sha256.to_owned(),
            self.fingerprint.clone(),
            bytes,
        ))
    }

    /// Keeps `artifact` (compiled or verified by this process) for the next start. A cache that
    /// can't be written only costs a compilation later.
    pub fn store(&self, artifact: &TrustedArtifact) {
        if artifact.engine() != self.fingerprint {
            return;
        }
        let path = self.path_for(artifact.sha256());
        if path.is_file() {
            return;
        }
        if let Err(error) = write_atomically(&self.dir, &path, artifact.bytes()) {
            tracing::warn!(dir = %self.dir.display(), %error, "could not cache compiled plugin");
        }
    }

    /// The component for `bytes`: from the cache when present and loadable, else compiled and
    /// stored. A cache that can't be read or written only costs a compilation.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        bytes: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<Component> {
        if let Some(component) = self.load(engine, sha256) {
            return Ok(component);
        }
        let artifact = TrustedArtifact::compiled_here(
            sha256.to_owned(),
            self.fingerprint.clone(),
            engine.precompile_component(bytes)?,
        );
        self.store(&artifact);
        // SAFETY: `artifact` was produced just above by this same engine.
        unsafe { Component::deserialize(engine, artifact.bytes()) }
    }
}

/// A short name for everything in `engine` that decides whether it can load an artifact: the
/// wasmtime version and every setting that affects code. Artifacts are shared (on disk, and
/// between replicas) only among engines with the same fingerprint.
pub fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
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
