//! Components pulled from a registry, kept on disk by manifest digest with their signatures,
//! so a restart with the registry down still serves every pinned digest pulled before.
//!
//! Layout under the cache directory:
//! - `components/<manifest-hex>.wasm`: the component's bytes;
//! - `components/<manifest-hex>.layer`: the layer digest the bytes must hash to;
//! - `components/<manifest-hex>.minisig`: the signatures found with it (possibly none);
//! - `tags/<sha256 of the tag reference>`: the digest a tag last resolved to.
//!
//! Entries are written atomically (temporary file, rename). Reading checks the bytes against
//! the recorded layer digest, and the signatures are verified again on every load, so a
//! corrupted or doctored cache entry can only ever be refused.

use crate::artifact_cache::sha256_hex;
use std::path::{Path, PathBuf};

/// A component as pulled: its bytes and signatures.
#[derive(Debug, Clone)]
pub struct CachedComponent {
    /// The component's bytes.
    pub bytes: Vec<u8>,
    /// The minisign signature texts that came with it.
    pub signatures: Vec<String>,
}

/// The on-disk pull cache.
#[derive(Debug, Clone)]
pub struct PullCache {
    dir: PathBuf,
}

impl PullCache {
    /// A cache in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Where it is.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn component_path(&self, digest: &str, extension: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir
            .join("components")
            .join(format!("{hex}.{extension}"))
    }

    fn tag_path(&self, reference: &str) -> PathBuf {
        self.dir.join("tags").join(sha256_hex(reference.as_bytes()))
    }

    /// The component cached for manifest `digest`, if present and intact.
    pub fn get(&self, digest: &str) -> Option<CachedComponent> {
        let bytes = std::fs::read(self.component_path(digest, "wasm")).ok()?;
        let layer = std::fs::read_to_string(self.component_path(digest, "layer")).ok()?;
        if layer.trim() != format!("sha256:{}", sha256_hex(&bytes)) {
            tracing::warn!(digest, "ignoring a corrupted pull-cache entry");
            return None;
        }
        let signatures = std::fs::read_to_string(self.component_path(digest, "minisig"))
            .map(|text| vec![text])
            .unwrap_or_default();
        Some(CachedComponent { bytes, signatures })
    }

    /// Stores a pulled component (bytes, layer digest, signatures) under manifest `digest`.
    pub fn put(
        &self,
        digest: &str,
        layer_digest: &str,
        component: &CachedComponent,
    ) -> std::io::Result<()> {
        write_atomically(&self.component_path(digest, "wasm"), &component.bytes)?;
        write_atomically(
            &self.component_path(digest, "minisig"),
            component.signatures.concat().as_bytes(),
        )?;
        // Last: an entry counts as present only once its layer digest is written.
        write_atomically(
            &self.component_path(digest, "layer"),
            layer_digest.as_bytes(),
        )
    }

    /// The digest `reference` (a tag reference) last resolved to.
    pub fn tag(&self, reference: &str) -> Option<String> {
        let digest = std::fs::read_to_string(self.tag_path(reference)).ok()?;
        super::oci::is_digest(digest.trim()).then(|| digest.trim().to_owned())
    }

    /// Records what `reference` (a tag reference) resolved to.
    pub fn put_tag(&self, reference: &str, digest: &str) -> std::io::Result<()> {
        write_atomically(&self.tag_path(reference), digest.as_bytes())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temporary, bytes)?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_component_comes_back_and_a_corrupted_one_does_not() {
        let dir = std::env::temp_dir().join(format!("pull-cache-test-{}", std::process::id()));
        let cache = PullCache::new(&dir);
        let digest = format!("sha256:{}", "a".repeat(64));
        let component = CachedComponent {
            bytes: b"wasm".to_vec(),
            signatures: vec!["sig\n".to_owned()],
        };
        let layer = format!("sha256:{}", sha256_hex(b"wasm"));
        cache.put(&digest, &layer, &component).expect("put");
        let back = cache.get(&digest).expect("cached");
        assert_eq!(back.bytes, b"wasm");
        assert_eq!(back.signatures, vec!["sig\n".to_owned()]);
        std::fs::write(cache.component_path(&digest, "wasm"), b"evil").expect("write");
        assert!(cache.get(&digest).is_none());
        cache.put_tag("oci://r/x:1", &digest).expect("tag");
        assert_eq!(cache.tag("oci://r/x:1"), Some(digest));
        let _ = std::fs::remove_dir_all(dir);
    }
}
