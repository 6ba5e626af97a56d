//! Where a slot's candidate comes from, and whether it may be trusted.
//!
//! - [`SlotSource`]: `file` (`<dir>/<name>.wasm`, the default) or an `oci://` reference,
//!   pinned by digest or (with a `pull-policy`) by tag, resolved to a digest.
//! - [`credentials`]: registry credentials, the password read from its secret per pull.
//! - [`oci`]: the registry client (pull and push of wasm component artifacts and their
//!   signature artifacts).
//! - [`signature`]: minisign signatures checked against `[plugins.trust]` before compilation.
//! - [`pull_cache`]: pulled components kept by digest, so a restart with the registry down still
//!   serves every pinned digest pulled before.
//!
//! [`Distribution::fetch`] is what the catalog calls: it returns the candidate's bytes with
//! their [`Provenance`] (reference, digest, the keys that verified it), or a typed refusal.

pub mod credentials;
pub mod oci;
pub mod pull_cache;
pub mod signature;

use crate::{artifact_cache::sha256_hex, config::HostConfig, egress::secrets::SecretStore};
use credentials::{RegistryLogins, SecretLogin};
use oci::{OciReference, PullError, ReferenceError, RegistryClient};
use pull_cache::{CachedComponent, PullCache};
use serde::{Deserialize, Serialize};
use signature::{SignatureError, TrustConfigError, TrustPolicy};
use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

/// When a tag (or a digest) is looked up at the registry (`pull-policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullPolicy {
    /// Ask the registry on every load; fall back to the cache for a pinned digest.
    Always,
    /// Use the cached copy (or the digest a tag last resolved to) when there is one.
    IfNotPresent,
}

/// Registry credentials in `[plugins.registry-credentials."host:port"]`; the password comes
/// from a secret of `[plugins.egress.secrets]` (an environment variable or a file; a file is
/// read again before each pull, so a rotated password needs no restart).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryCredentialConfig {
    /// The user name.
    pub username: String,
    /// The name of the secret holding the password or token (`password-secret`).
    #[serde(rename = "password-secret")]
    pub password_secret: String,
}

/// Where a slot's candidate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotSource {
    /// `<dir>/<name>.wasm`, signatures in `<dir>/<name>.wasm.minisig`.
    File,
    /// A registry artifact.
    Oci {
        /// As configured (a digest, or a tag).
        reference: OciReference,
        /// When to ask the registry.
        pull_policy: PullPolicy,
    },
}

impl SlotSource {
    /// Parses `file` or `oci://…`; a tag needs a pull policy, a digest defaults to
    /// `if-not-present` (the content of a digest never changes).
    pub fn parse(text: &str, pull_policy: Option<PullPolicy>) -> Result<Self, SourceError> {
        let text = text.trim();
        if text == "file" {
            return Ok(Self::File);
        }
        let reference = OciReference::parse(text)?;
        let pull_policy = match (&reference.digest, pull_policy) {
            (_, Some(policy)) => policy,
            (Some(_), None) => PullPolicy::IfNotPresent,
            (None, None) => {
                return Err(SourceError::TagWithoutPullPolicy {
                    reference: text.to_owned(),
                });
            }
        };
        Ok(Self::Oci {
            reference,
            pull_policy,
        })
    }

    /// `file`, or the reference as configured.
    pub fn describe(&self) -> String {
        match self {
            Self::File => "file".to_owned(),
            Self::Oci { reference, .. } => reference.to_string(),
        }
    }
}

/// Where a serving version came from and who vouched for it; carried by its identity into
/// every decision record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// `file`, or the `oci://…@sha256:…` reference it was pulled as (a tag resolved).
    pub source: String,
    /// The tag reference it was resolved from, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_from: Option<String>,
    /// The OCI manifest digest, or `sha256:<hex>` of a file.
    pub digest: String,
    /// Ids of the trusted keys whose signatures verified it (empty when none were required).
    pub verified_by: Vec<String>,
}

/// How a candidate's bytes were obtained, for the slot's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Read from the plugin directory.
    File,
    /// Pulled from the registry just now.
    Registry,
    /// Taken from the pull cache; `note` says why (e.g. the registry was down).
    Cache {
        /// Why the cache was used.
        note: String,
    },
}

/// A candidate ready for compilation: its bytes passed every check of its source.
#[derive(Debug)]
pub struct Candidate {
    /// The component's bytes.
    pub bytes: Vec<u8>,
    /// `None` for an unsigned file when no signature is required (the behaviour without keys).
    pub provenance: Option<Arc<Provenance>>,
    /// How the bytes were obtained.
    pub origin: Origin,
}

/// Why a candidate could not be fetched, or was refused before compilation.
#[allow(
    missing_docs,
    reason = "each variant's fields are named in its #[error] message"
)]
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The reference cannot be parsed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A tag was given without a pull policy.
    #[error(
        "`{reference}` names a tag: pin a digest (@sha256:…), or set pull-policy = \"always\" or \"if-not-present\""
    )]
    TagWithoutPullPolicy { reference: String },
    /// The registry failed and nothing usable is cached.
    #[error("{error}; nothing is cached for {reference}")]
    Pull { reference: String, error: PullError },
    /// The signatures do not satisfy the trust policy.
    #[error(transparent)]
    Signature(#[from] SignatureError),
    /// A signature is required, but no trusted key is configured.
    #[error("require-signature is set but [plugins.trust] has no keys")]
    NoTrustedKeys,
    /// `[plugins.trust]` is invalid.
    #[error(transparent)]
    Trust(#[from] TrustConfigError),
    /// A registry credential names a secret that cannot be read.
    #[error("registry credentials for {registry}: {reason}")]
    Credentials { registry: String, reason: String },
    /// The signature file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    ReadSignature {
        path: String,
        source: std::io::Error,
    },
}

/// The per-slot distribution settings, resolved from its configuration.
#[derive(Debug, Clone)]
pub struct SlotDistribution {
    /// Where the slot's candidates come from at start.
    pub source: SlotSource,
    /// Whether a candidate must carry enough trusted signatures.
    pub require_signature: bool,
}

/// The host's registry client, trust policy and pull cache.
#[derive(Debug)]
pub struct Distribution {
    trust: TrustPolicy,
    registry: RegistryClient,
    cache: PullCache,
}

impl Distribution {
    /// Builds it from the host configuration. Registry passwords are secrets of `secrets`
    /// (the egress gateway's store, `[plugins.egress.secrets]`), read again before each pull.
    pub fn new(config: &HostConfig, secrets: Arc<SecretStore>) -> Result<Self, SourceError> {
        let trust = TrustPolicy::from_config(&config.trust)?;
        let logins = config
            .registry_credentials
            .iter()
            .map(|(registry, entry)| {
                (
                    registry.clone(),
                    SecretLogin {
                        username: entry.username.clone(),
                        password_secret: entry.password_secret.clone(),
                    },
                )
            })
            .collect();
        let logins = RegistryLogins::from_secrets(logins, secrets)
            .map_err(|(registry, reason)| SourceError::Credentials { registry, reason })?;
        let cache_dir = match &config.cache_dir {
            Some(dir) => dir.join("pulled"),
            None => config.dir.join(".pulled"),
        };
        Ok(Self {
            trust,
            registry: RegistryClient::with_logins(&config.insecure_registries, logins),
            cache: PullCache::new(cache_dir),
        })
    }

    /// The trust policy.
    pub fn trust(&self) -> &TrustPolicy {
        &self.trust
    }

    /// The pull cache.
    pub fn cache(&self) -> &PullCache {
        &self.cache
    }

    /// Resolves a slot's `source`, `pull-policy` and `require-signature` (default: true as soon
    /// as any trusted key is configured).
    pub fn slot(
        &self,
        source: Option<&str>,
        pull_policy: Option<PullPolicy>,
        require_signature: Option<bool>,
    ) -> Result<SlotDistribution, SourceError> {
        let source = match source {
            Some(text) => SlotSource::parse(text, pull_policy)?,
            None => SlotSource::File,
        };
        let require_signature = require_signature.unwrap_or(!self.trust.is_empty());
        if require_signature && self.trust.is_empty() {
            return Err(SourceError::NoTrustedKeys);
        }
        Ok(SlotDistribution {
            source,
            require_signature,
        })
    }

    /// Fetches the candidate for a slot from `source` (`file` reads `file`) and, when
    /// required, verifies its signatures. Nothing here compiles anything.
    pub async fn fetch(
        &self,
        name: &str,
        source: &SlotSource,
        file: &Path,
        require_signature: bool,
    ) -> Result<Candidate, crate::error::LoadError> {
        match source {
            SlotSource::File => self.fetch_file(name, file, require_signature).await,
            SlotSource::Oci {
                reference,
                pull_policy,
            } => self
                .fetch_oci(reference, *pull_policy, require_signature)
                .await
                .map_err(|error| crate::error::LoadError::Distribution {
                    name: name.to_owned(),
                    source: Box::new(error),
                }),
        }
    }

    async fn fetch_file(
        &self,
        name: &str,
        path: &Path,
        require_signature: bool,
    ) -> Result<Candidate, crate::error::LoadError> {
        let bytes =
            tokio::fs::read(path)
                .await
                .map_err(|source| crate::error::LoadError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
        if !require_signature {
            return Ok(Candidate {
                bytes,
                provenance: None,
                origin: Origin::File,
            });
        }
        let signature_path = signature_path(path);
        let distribution_error = |error: SourceError| crate::error::LoadError::Distribution {
            name: name.to_owned(),
            source: Box::new(error),
        };
        let signatures = match tokio::fs::read_to_string(&signature_path).await {
            Ok(text) => vec![text],
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(distribution_error(SourceError::ReadSignature {
                    path: signature_path.display().to_string(),
                    source,
                }));
            }
        };
        let verified_by = self
            .trust
            .verify(
                &path.display().to_string(),
                &signature_path.display().to_string(),
                &bytes,
                &signatures,
            )
            .map_err(|error| distribution_error(error.into()))?;
        Ok(Candidate {
            provenance: Some(Arc::new(Provenance {
                source: "file".to_owned(),
                resolved_from: None,
                digest: format!("sha256:{}", sha256_hex(&bytes)),
                verified_by,
            })),
            bytes,
            origin: Origin::File,
        })
    }

    async fn fetch_oci(
        &self,
        reference: &OciReference,
        pull_policy: PullPolicy,
        require_signature: bool,
    ) -> Result<Candidate, SourceError> {
        let configured = reference.to_string();
        // The digest to load: pinned, or what the tag resolves to (now, or last time).
        let (digest, mut note) = if let Some(digest) = &reference.digest {
            (digest.clone(), None)
        } else {
            let cached = self.cache.tag(&configured);
            match (pull_policy, cached) {
                (PullPolicy::IfNotPresent, Some(digest)) => (digest, None),
                (_, cached) => match self.registry.resolve(reference).await {
                    Ok(digest) => {
                        if let Err(error) = self.cache.put_tag(&configured, &digest) {
                            tracing::warn!(%error, reference = %configured, "cannot record a resolved tag in the pull cache");
                        }
                        (digest, None)
                    }
                    Err(error) => match cached {
                        Some(digest) => (
                            digest,
                            Some(format!(
                                "the registry failed ({error}); using the digest the tag last resolved to"
                            )),
                        ),
                        None => {
                            return Err(SourceError::Pull {
                                reference: configured,
                                error,
                            });
                        }
                    },
                },
            }
        };
        let pinned = reference.at_digest(&digest);
        let cached = self.cache.get(&digest);
        let (component, origin) = match (pull_policy, cached, note.take()) {
            (PullPolicy::IfNotPresent, Some(component), note) => {
                let note = note.unwrap_or_else(|| format!("{digest} was in the pull cache"));
                (component, Origin::Cache { note })
            }
            (_, cached, _) => match self.pull(&pinned).await {
                Ok(component) => (component, Origin::Registry),
                Err(error) => match cached {
                    Some(component) => (
                        component,
                        Origin::Cache {
                            note: format!(
                                "the registry failed ({error}); serving the cached copy of {digest}"
                            ),
                        },
                    ),
                    None => {
                        return Err(SourceError::Pull {
                            reference: pinned.to_string(),
                            error,
                        });
                    }
                },
            },
        };
        let verify = |signatures: &[String]| {
            self.trust.verify(
                &pinned.to_string(),
                &format!(
                    "{}/{}:{}",
                    pinned.registry,
                    pinned.repository,
                    oci::signature_tag(&digest)
                ),
                &component.bytes,
                signatures,
            )
        };
        let verified_by = if require_signature {
            match (verify(&component.signatures), &origin) {
                (Ok(verified_by), _) => verified_by,
                // The bytes of a digest never change, its signatures may: before refusing a
                // cached copy, look for signatures published since it was cached.
                (Err(error), Origin::Cache { .. }) => {
                    match self.registry.pull_signatures(&pinned, &digest).await {
                        Ok(fresh) if fresh != component.signatures => {
                            let verified_by = verify(&fresh)?;
                            let layer = format!("sha256:{}", sha256_hex(&component.bytes));
                            let refreshed = CachedComponent {
                                bytes: component.bytes.clone(),
                                signatures: fresh,
                            };
                            if let Err(error) = self.cache.put(&digest, &layer, &refreshed) {
                                tracing::warn!(%error, "cannot update the pull cache's signatures");
                            }
                            verified_by
                        }
                        _ => return Err(error.into()),
                    }
                }
                (Err(error), _) => return Err(error.into()),
            }
        } else {
            Vec::new()
        };
        Ok(Candidate {
            bytes: component.bytes,
            provenance: Some(Arc::new(Provenance {
                source: pinned.to_string(),
                resolved_from: reference.digest.is_none().then_some(configured),
                digest,
                verified_by,
            })),
            origin,
        })
    }

    /// Pulls a component and its signatures and caches them.
    async fn pull(&self, reference: &OciReference) -> Result<CachedComponent, PullError> {
        let pulled = self.registry.pull_component(reference).await?;
        let signatures = self
            .registry
            .pull_signatures(reference, &pulled.digest)
            .await?;
        let component = CachedComponent {
            bytes: pulled.bytes,
            signatures,
        };
        if let Err(error) = self
            .cache
            .put(&pulled.digest, &pulled.layer_digest, &component)
        {
            tracing::warn!(%error, dir = %self.cache.dir().display(), "cannot write the pull cache");
        }
        Ok(component)
    }
}

/// `<file>.minisig`.
pub fn signature_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".minisig");
    PathBuf::from(name)
}
