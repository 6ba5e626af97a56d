//! Compiled components shared between the replicas of one deployment, authenticated.
//!
//! A compiled artifact is native code, loaded with `unsafe Component::deserialize`: whoever can
//! write the shared store (the database) must not be able to run code on every replica. So an
//! artifact is only trusted with an HMAC-SHA256 tag, under a key the replicas share, over the
//! component's sha-256, the engine fingerprint and the artifact bytes. A [`TrustedArtifact`] can
//! only be made by verifying such a tag or by compiling with this process's own engine, and it
//! is the only thing the engine deserializes from memory.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Domain separation: these tags sign nothing else the key might ever sign.
const CONTEXT: &[u8] = b"user-service plugin artifact v1\0";

/// The shortest key accepted: the output size of the hash.
pub const MIN_KEY_BYTES: usize = 32;

/// The deployment's artifact key. Its bytes never show in `Debug`.
#[derive(Clone)]
pub struct ArtifactKey(Vec<u8>);

impl std::fmt::Debug for ArtifactKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ArtifactKey(..)")
    }
}

/// Why a key or an artifact is not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArtifactError {
    /// The configured key is too short to authenticate native code.
    #[error("the artifact key has {actual} bytes; at least {MIN_KEY_BYTES} are needed")]
    KeyTooShort {
        /// Its length.
        actual: usize,
    },
    /// The tag does not authenticate these bytes for this component and engine under this
    /// key: forged, tampered with, truncated, replayed from another component, or written by a
    /// replica with another key.
    #[error("the artifact's tag does not verify")]
    BadTag,
}

impl ArtifactKey {
    /// A key from the secret's bytes (at least [`MIN_KEY_BYTES`]).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, ArtifactError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_KEY_BYTES {
            return Err(ArtifactError::KeyTooShort {
                actual: bytes.len(),
            });
        }
        Ok(Self(bytes))
    }

    fn mac(&self, sha256: &str, engine: &str, artifact: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(CONTEXT);
        // Length-prefixed fields: no two (sha256, engine) pairs feed the same bytes.
        for field in [sha256.as_bytes(), engine.as_bytes()] {
            mac.update(&(field.len() as u64).to_be_bytes());
            mac.update(field);
        }
        mac.update(artifact);
        mac
    }

    /// The tag of `artifact` (this engine's compilation of the component `sha256`).
    pub fn sign(&self, artifact: &TrustedArtifact) -> Vec<u8> {
        self.mac(&artifact.sha256, &artifact.engine, &artifact.bytes)
            .finalize()
            .into_bytes()
            .to_vec()
    }

    /// `artifact` as trusted when `tag` authenticates it as the compilation of component
    /// `sha256` by an engine with fingerprint `engine`. The comparison is constant-time.
    pub fn verify(
        &self,
        sha256: &str,
        engine: &str,
        artifact: Vec<u8>,
        tag: &[u8],
    ) -> Result<TrustedArtifact, ArtifactError> {
        self.mac(sha256, engine, &artifact)
            .verify_slice(tag)
            .map_err(|_| ArtifactError::BadTag)?;
        Ok(TrustedArtifact {
            sha256: sha256.to_owned(),
            engine: engine.to_owned(),
            bytes: artifact,
        })
    }
}

/// A compiled component this process may deserialize: compiled by its own engine, or verified
/// with the deployment's key.
#[derive(Debug, Clone)]
pub struct TrustedArtifact {
    sha256: String,
    engine: String,
    bytes: Vec<u8>,
}

impl TrustedArtifact {
    /// Made by this process's own engine (see `PolicyEngine::precompile`).
    pub(crate) fn compiled_here(sha256: String, engine: String, bytes: Vec<u8>) -> Self {
        Self {
            sha256,
            engine,
            bytes,
        }
    }

    /// Lower-case hex sha-256 of the component it is compiled from.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The fingerprint of the engine that compiled it.
    pub fn engine(&self) -> &str {
        &self.engine
    }

    /// The compiled bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "aa";
    const ENGINE: &str = "0123456789abcdef";

    fn signed(key: &ArtifactKey, bytes: &[u8]) -> (TrustedArtifact, Vec<u8>) {
        let artifact =
            TrustedArtifact::compiled_here(SHA.to_owned(), ENGINE.to_owned(), bytes.to_vec());
        let tag = key.sign(&artifact);
        (artifact, tag)
    }

    #[test]
    fn a_short_key_is_refused() {
        assert_eq!(
            ArtifactKey::new(vec![7; 31]).unwrap_err(),
            ArtifactError::KeyTooShort { actual: 31 }
        );
    }

    #[test]
    fn only_the_signed_triple_under_the_same_key_verifies() {
        let key = ArtifactKey::new(vec![1; 32]).unwrap();
        let (artifact, tag) = signed(&key, b"native code");
        assert!(
            key.verify(SHA, ENGINE, artifact.bytes.clone(), &tag)
                .is_ok()
        );

        let mut tampered = artifact.bytes.clone();
        tampered[3] ^= 1;
        let other_key = ArtifactKey::new(vec![2; 32]).unwrap();
        let refusals = [
            key.verify(SHA, ENGINE, tampered, &tag),
            key.verify(SHA, ENGINE, b"native cod".to_vec(), &tag),
            key.verify("ab", ENGINE, artifact.bytes.clone(), &tag),
            key.verify(SHA, "fedcba9876543210", artifact.bytes.clone(), &tag),
            key.verify(SHA, ENGINE, artifact.bytes.clone(), &tag[..16]),
            key.verify(SHA, ENGINE, artifact.bytes.clone(), &[]),
            other_key.verify(SHA, ENGINE, artifact.bytes.clone(), &tag),
        ];
        for refusal in refusals {
            assert_eq!(refusal.unwrap_err(), ArtifactError::BadTag);
        }
    }

    #[test]
    fn fields_cannot_slide_into_each_other() {
        let key = ArtifactKey::new(vec![1; 32]).unwrap();
        let (artifact, tag) = signed(&key, b"x");
        // "aa" + "0123…" must not verify as "aa0" + "123…".
        assert!(
            key.verify("aa0", &ENGINE[1..], artifact.bytes, &tag)
                .is_err()
        );
    }
}
