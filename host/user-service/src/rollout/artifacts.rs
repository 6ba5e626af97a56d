//! Compile once per deployment: the replica that receives an upload compiles it and stores the
//! artifact, signed with the deployment's artifact key, before the desired state points at it;
//! the other replicas verify the tag and deserialize (milliseconds) instead of compiling
//! (a second or more with Cranelift on a small machine).
//!
//! Without a key nothing is written or trusted: every replica compiles, as before. A missing,
//! corrupt, forged or foreign artifact (other key, other component, other engine) is ignored
//! with a warning and `plugin_shared_artifacts_total{outcome="refused"}`: the replica compiles
//! from the component bytes, which it checked against the digest.

use crate::store::Store;
use egress::{config::SecretSource, secrets::SecretStore};
use policy_host::{
    engine::PolicyEngine,
    shared_artifact::{ArtifactKey, TrustedArtifact},
};
use std::{collections::BTreeMap, sync::Arc};

const KEY_NAME: &str = "artifact-key";

fn count(outcome: &'static str) {
    metrics::counter!("plugin_shared_artifacts_total", "outcome" => outcome).increment(1);
}

/// The shared artifacts of this replica's engine.
pub struct SharedArtifacts {
    store: Store,
    engine: Arc<PolicyEngine>,
    key: Option<ArtifactKey>,
}

/// Reads `[rollout] artifact-key` (a secret: file, env or value), when configured.
pub fn load_key(source: Option<&SecretSource>) -> anyhow::Result<Option<ArtifactKey>> {
    let Some(source) = source else {
        return Ok(None);
    };
    let secrets = SecretStore::load(&BTreeMap::from([(KEY_NAME.to_owned(), source.clone())]))
        .map_err(|error| anyhow::anyhow!("[rollout] artifact-key: {error}"))?;
    let value = secrets
        .value(KEY_NAME)
        .ok_or_else(|| anyhow::anyhow!("[rollout] artifact-key: no value"))?;
    ArtifactKey::new(value.as_bytes())
        .map(Some)
        .map_err(|error| anyhow::anyhow!("[rollout] artifact-key: {error}"))
}

impl SharedArtifacts {
    /// Shared artifacts in `store` for `engine`, signed and verified with `key` (none: off).
    pub fn new(store: Store, engine: Arc<PolicyEngine>, key: Option<ArtifactKey>) -> Self {
        Self { store, engine, key }
    }

    /// Whether artifacts are shared (a key is configured).
    pub fn enabled(&self) -> bool {
        self.key.is_some()
    }

    /// Makes sure the database holds this engine's signed artifact of `bytes` (component
    /// `sha256`, hex), compiling it when it does not. Never fails: a component that does not
    /// compile is refused by the replicas as usual, and a database error only costs each replica
    /// a compilation.
    pub async fn publish(&self, sha256: &str, bytes: Vec<u8>) {
        let Some(key) = &self.key else {
            return;
        };
        if self.verified(key, sha256).await.is_some() {
            return;
        }
        let engine = self.engine.clone();
        let owned_sha256 = sha256.to_owned();
        let compiled =
            tokio::task::spawn_blocking(move || engine.precompile(&bytes, &owned_sha256)).await;
        let artifact = match compiled {
            Ok(Ok(artifact)) => artifact,
            Ok(Err(error)) => {
                tracing::info!(sha256, error = %format!("{error:#}"), "the uploaded component does not compile; no artifact shared");
                return;
            }
            Err(error) => {
                tracing::warn!(sha256, %error, "the compilation task failed; no artifact shared");
                return;
            }
        };
        let tag = key.sign(&artifact);
        match self
            .store
            .put_artifact(sha256, artifact.engine(), artifact.bytes(), &tag)
            .await
        {
            Ok(()) => count("published"),
            Err(error) => {
                tracing::warn!(sha256, %error, "cannot store the compiled artifact; each replica compiles");
            }
        }
    }

    /// The verified artifact of component `sha256` (hex) for this engine, if one is stored and
    /// its tag verifies. Anything else is counted and ignored.
    pub async fn fetch(&self, sha256: &str) -> Option<TrustedArtifact> {
        let key = self.key.as_ref()?;
        self.verified(key, sha256).await
    }

    async fn verified(&self, key: &ArtifactKey, sha256: &str) -> Option<TrustedArtifact> {
        let engine = self.engine.fingerprint();
        match self.store.artifact(sha256, engine).await {
            Ok(Some(row)) => match key.verify(sha256, engine, row.artifact, &row.tag) {
                Ok(artifact) => {
                    count("verified");
                    Some(artifact)
                }
                Err(error) => {
                    tracing::warn!(sha256, engine, %error, "refusing a shared artifact; compiling instead");
                    count("refused");
                    None
                }
            },
            Ok(None) => {
                count("missing");
                None
            }
            Err(error) => {
                tracing::warn!(sha256, engine, error = %format!("{error:#}"), "refusing a shared artifact; compiling instead");
                count("refused");
                None
            }
        }
    }
}
