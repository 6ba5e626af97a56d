//! OCI references and the registry client: pull a wasm component artifact by digest (CNCF
//! wasm OCI artifact layout: config `application/vnd.wasm.config.v0+json`, one
//! `application/wasm` layer), its signature artifact (tag `sha256-<hex>.sig`, the cosign
//! fallback scheme plain registries support), and push both (for the `plugin` CLI).
//!
//! Every digest is checked here: the manifest's bytes against the pinned digest, the layer's
//! bytes against the manifest.

use crate::artifact_cache::sha256_hex;
use oci_client::{
    Client, Reference,
    client::{ClientConfig, ClientProtocol},
    errors::{OciDistributionError, OciErrorCode},
    manifest::OciDescriptor,
    secrets::RegistryAuth,
};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, fmt, time::Duration};

/// The manifest media type this host reads and writes.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The config media type of a wasm component artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The media type of the component layer.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The artifact type of a signature artifact.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.minisign.signature.v1";
/// The media type of one signature layer (a `.minisig` text).
pub const SIGNATURE_LAYER_MEDIA_TYPE: &str = "application/vnd.dev.minisign.signature.v1+text";
/// The OCI empty config (for the signature artifact).
pub const EMPTY_CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.empty.v1+json";
/// The largest component or signature this host pulls.
pub const MAX_BLOB_BYTES: u64 = 64 << 20;

/// A parsed `oci://registry[:port]/repository[:tag][@sha256:<hex>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciReference {
    /// `host[:port]`.
    pub registry: String,
    /// `path/to/name`.
    pub repository: String,
    /// The tag, when one was given.
    pub tag: Option<String>,
    /// `sha256:<hex>`, when pinned.
    pub digest: Option<String>,
}

/// Why an `oci://` reference is not usable.
#[allow(
    missing_docs,
    reason = "each variant's fields are named in its #[error] message"
)]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ReferenceError {
    /// Not of the form `oci://registry/repository@sha256:<hex>` (or `:tag`).
    #[error("`{reference}` is not an OCI reference: {reason}")]
    Malformed { reference: String, reason: String },
}

impl OciReference {
    /// Parses `oci://…` (the scheme is required).
    pub fn parse(reference: &str) -> Result<Self, ReferenceError> {
        let malformed = |reason: &str| ReferenceError::Malformed {
            reference: reference.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = reference
            .strip_prefix("oci://")
            .ok_or_else(|| malformed("it must start with oci://"))?;
        let (registry, _) = rest
            .split_once('/')
            .ok_or_else(|| malformed("it names no repository"))?;
        if registry.is_empty()
            || !(registry.contains('.') || registry.contains(':') || registry == "localhost")
        {
            return Err(malformed(
                "it must name its registry (host or host:port) before the repository",
            ));
        }
        let parsed: Reference = rest
            .parse()
            .map_err(|error: oci_client::ParseError| malformed(&error.to_string()))?;
        if let Some(digest) = parsed.digest()
            && !is_digest(digest)
        {
            return Err(malformed("the digest must be sha256:<64 lower-case hex>"));
        }
        let tag = parsed.tag().map(str::to_owned).filter(|_| {
            rest.rsplit('/')
                .next()
                .is_some_and(|last| last.contains(':'))
        });
        if tag.is_none() && parsed.digest().is_none() {
            return Err(malformed("it needs a digest (@sha256:<hex>) or a tag"));
        }
        Ok(Self {
            registry: parsed.registry().to_owned(),
            repository: parsed.repository().to_owned(),
            tag,
            digest: parsed.digest().map(str::to_owned),
        })
    }

    /// The same repository at `digest`.
    pub fn at_digest(&self, digest: &str) -> Self {
        Self {
            tag: None,
            digest: Some(digest.to_owned()),
            ..self.clone()
        }
    }

    /// The same repository at tag `tag`.
    pub fn at_tag(&self, tag: &str) -> Self {
        Self {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        }
    }

    fn client_reference(&self) -> Reference {
        match (&self.tag, &self.digest) {
            (_, Some(digest)) => Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                digest.clone(),
            ),
            (Some(tag), None) => {
                Reference::with_tag(self.registry.clone(), self.repository.clone(), tag.clone())
            }
            (None, None) => Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                "latest".to_owned(),
            ),
        }
    }
}

impl fmt::Display for OciReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag
            && self.digest.is_none()
        {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// True for `sha256:` followed by 64 lower-case hex digits.
pub fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The tag of the signature artifact for manifest `digest`: `sha256-<hex>.sig`.
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// Why talking to a registry failed.
#[allow(
    missing_docs,
    reason = "each variant's fields are named in its #[error] message"
)]
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry could not be reached, or answered with an error.
    #[error("registry {registry}: {what} failed: {message}")]
    Registry {
        registry: String,
        what: String,
        message: String,
    },
    /// The registry refused the request: no credentials, or not the ones it holds.
    #[error(
        "registry {registry}: {what} was refused (unauthorized): {}",
        if *credentials { "the configured credentials were not accepted (a rotated password not yet in its file?)" } else { "no credentials are configured for it in [plugins.registry-credentials]" }
    )]
    Unauthorized {
        registry: String,
        what: String,
        credentials: bool,
    },
    /// The manifest or tag does not exist.
    #[error("{reference} does not exist in the registry")]
    NotFound { reference: String },
    /// The registry sent content that does not hash to the digest that names it.
    #[error("{what} of {reference} hashes to {actual}, not {expected}")]
    DigestMismatch {
        reference: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    /// The artifact is not a wasm component artifact (or a signature artifact).
    #[error("{reference} is not a {expected}: {reason}")]
    NotAnArtifact {
        reference: String,
        expected: &'static str,
        reason: String,
    },
}

pub use super::credentials::RegistryCredentials;
use super::credentials::RegistryLogins;

/// A component as pulled.
#[derive(Debug, Clone)]
pub struct PulledComponent {
    /// The manifest digest (what a reference pins).
    pub digest: String,
    /// The layer's digest.
    pub layer_digest: String,
    /// The component's bytes.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact_type: Option<String>,
    config: Descriptor,
    layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: String,
    digest: String,
    size: u64,
}

impl Descriptor {
    fn of(media_type: &str, bytes: &[u8]) -> Self {
        Self {
            media_type: media_type.to_owned(),
            digest: format!("sha256:{}", sha256_hex(bytes)),
            size: bytes.len() as u64,
        }
    }

    fn oci(&self) -> OciDescriptor {
        OciDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: i64::try_from(self.size).unwrap_or(i64::MAX),
            ..OciDescriptor::default()
        }
    }
}

/// A registry client: HTTPS, except for the registries listed as insecure; credentials per
/// registry.
pub struct RegistryClient {
    client: Client,
    logins: RegistryLogins,
}

impl fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryClient")
            .field("logins", &self.logins)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client that speaks plain HTTP only to `insecure` registries (`host:port`).
    pub fn new(insecure: &[String], credentials: BTreeMap<String, RegistryCredentials>) -> Self {
        Self::with_logins(insecure, RegistryLogins::fixed(credentials))
    }

    /// A client whose credentials are looked up in `logins` for every pull (so a rotated
    /// password is used from the next one on).
    pub fn with_logins(insecure: &[String], logins: RegistryLogins) -> Self {
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.to_vec()),
            connect_timeout: Some(Duration::from_secs(5)),
            read_timeout: Some(Duration::from_secs(30)),
            platform_resolver: None,
            ..ClientConfig::default()
        };
        Self {
            client: Client::new(config),
            logins,
        }
    }

    /// Authenticates for `operation` on `reference`'s repository with the credentials in
    /// force now, and returns them. The client keeps them for the requests that follow, until
    /// the next call replaces them (each pull and push starts with one).
    async fn authenticate(
        &self,
        reference: &OciReference,
        operation: oci_client::RegistryOperation,
    ) -> RegistryAuth {
        let auth = self.logins.auth(&reference.registry).await;
        // A failure here shows up again, typed, on the request that follows.
        let _ = self
            .client
            .auth(&reference.client_reference(), &auth, operation)
            .await;
        auth
    }

    fn failed(
        &self,
        reference: &OciReference,
        what: &str,
        error: OciDistributionError,
    ) -> PullError {
        let unauthorized = match &error {
            OciDistributionError::UnauthorizedError { .. }
            | OciDistributionError::AuthenticationFailure(_) => true,
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().any(|error| {
                    matches!(
                        error.code,
                        OciErrorCode::Unauthorized | OciErrorCode::Denied
                    )
                })
            }
            OciDistributionError::ServerError { code, .. } => *code == 401 || *code == 403,
            _ => false,
        };
        if unauthorized {
            return PullError::Unauthorized {
                registry: reference.registry.clone(),
                what: what.to_owned(),
                credentials: self.logins.has(&reference.registry),
            };
        }
        let not_found = match &error {
            OciDistributionError::ImageManifestNotFoundError(_) => true,
            OciDistributionError::RegistryError { envelope, .. } => {
                envelope.errors.iter().any(|error| {
                    matches!(
                        error.code,
                        OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown
                    )
                })
            }
            OciDistributionError::ServerError { code, .. } => *code == 404,
            _ => false,
        };
        if not_found {
            return PullError::NotFound {
                reference: reference.to_string(),
            };
        }
        PullError::Registry {
            registry: reference.registry.clone(),
            what: what.to_owned(),
            message: error.to_string(),
        }
    }

    async fn manifest(&self, reference: &OciReference) -> Result<(Manifest, String), PullError> {
        let auth = self
            .authenticate(reference, oci_client::RegistryOperation::Pull)
            .await;
        let (bytes, registry_digest) = self
            .client
            .pull_manifest_raw(&reference.client_reference(), &auth, &[MANIFEST_MEDIA_TYPE])
            .await
            .map_err(|error| self.failed(reference, "fetching the manifest", error))?;
        let actual = format!("sha256:{}", sha256_hex(&bytes));
        let expected = reference.digest.clone().unwrap_or(registry_digest);
        if actual != expected {
            return Err(PullError::DigestMismatch {
                reference: reference.to_string(),
                what: "the manifest",
                expected,
                actual,
            });
        }
        let manifest: Manifest =
            serde_json::from_slice(&bytes).map_err(|error| PullError::NotAnArtifact {
                reference: reference.to_string(),
                expected: "OCI image manifest",
                reason: error.to_string(),
            })?;
        Ok((manifest, actual))
    }

    async fn blob(
        &self,
        reference: &OciReference,
        descriptor: &Descriptor,
    ) -> Result<Vec<u8>, PullError> {
        if descriptor.size > MAX_BLOB_BYTES {
            return Err(PullError::NotAnArtifact {
                reference: reference.to_string(),
                expected: "blob this host accepts",
                reason: format!("{} bytes is more than {MAX_BLOB_BYTES}", descriptor.size),
            });
        }
        let mut bytes = Vec::new();
        self.client
            .pull_blob(&reference.client_reference(), &descriptor.oci(), &mut bytes)
            .await
            .map_err(|error| self.failed(reference, "fetching a blob", error))?;
        let actual = format!("sha256:{}", sha256_hex(&bytes));
        if actual != descriptor.digest {
            return Err(PullError::DigestMismatch {
                reference: reference.to_string(),
                what: "a layer",
                expected: descriptor.digest.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// The manifest digest `reference` (a tag) points to now.
    pub async fn resolve(&self, reference: &OciReference) -> Result<String, PullError> {
        let (_, digest) = self.manifest(reference).await?;
        Ok(digest)
    }

    /// Pulls the component at `reference` (pinned to a digest, or a tag), checking every
    /// digest and the artifact's layout.
    pub async fn pull_component(
        &self,
        reference: &OciReference,
    ) -> Result<PulledComponent, PullError> {
        let (manifest, digest) = self.manifest(reference).await?;
        let not_wasm = |reason: String| PullError::NotAnArtifact {
            reference: reference.to_string(),
            expected: "wasm component artifact",
            reason,
        };
        if manifest.config.media_type != WASM_CONFIG_MEDIA_TYPE {
            return Err(not_wasm(format!(
                "config media type is {}, not {WASM_CONFIG_MEDIA_TYPE}",
                manifest.config.media_type
            )));
        }
        let [layer] = manifest.layers.as_slice() else {
            return Err(not_wasm(format!(
                "{} layers, not one",
                manifest.layers.len()
            )));
        };
        if layer.media_type != WASM_LAYER_MEDIA_TYPE {
            return Err(not_wasm(format!(
                "layer media type is {}, not {WASM_LAYER_MEDIA_TYPE}",
                layer.media_type
            )));
        }
        let pinned = reference.at_digest(&digest);
        let bytes = self.blob(&pinned, layer).await?;
        Ok(PulledComponent {
            digest,
            layer_digest: layer.digest.clone(),
            bytes,
        })
    }

    /// The signatures published for manifest `digest` (tag `sha256-<hex>.sig` in the same
    /// repository); none when that tag does not exist.
    pub async fn pull_signatures(
        &self,
        reference: &OciReference,
        digest: &str,
    ) -> Result<Vec<String>, PullError> {
        let signatures = reference.at_tag(&signature_tag(digest));
        let manifest = match self.manifest(&signatures).await {
            Ok((manifest, _)) => manifest,
            Err(PullError::NotFound { .. }) => return Ok(Vec::new()),
            Err(error) => return Err(error),
        };
        let mut texts = Vec::new();
        for layer in manifest
            .layers
            .iter()
            .filter(|layer| layer.media_type == SIGNATURE_LAYER_MEDIA_TYPE)
        {
            let bytes = self.blob(&signatures, layer).await?;
            texts.push(String::from_utf8_lossy(&bytes).into_owned());
        }
        Ok(texts)
    }

    async fn push_blob(&self, reference: &OciReference, bytes: &[u8]) -> Result<(), PullError> {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        self.client
            .push_blob(&reference.client_reference(), bytes, &digest)
            .await
            .map_err(|error| self.failed(reference, "pushing a blob", error))?;
        Ok(())
    }

    async fn push_manifest(
        &self,
        reference: &OciReference,
        manifest: &Manifest,
    ) -> Result<String, PullError> {
        let body = serde_json::to_vec(manifest).map_err(|error| PullError::NotAnArtifact {
            reference: reference.to_string(),
            expected: "manifest",
            reason: error.to_string(),
        })?;
        let digest = format!("sha256:{}", sha256_hex(&body));
        self.client
            .push_manifest_raw(
                &reference.client_reference(),
                body,
                http::HeaderValue::from_static(MANIFEST_MEDIA_TYPE),
            )
            .await
            .map_err(|error| self.failed(reference, "pushing the manifest", error))?;
        Ok(digest)
    }

    /// Pushes `component` as a wasm component artifact to `reference` (a tag, or a bare
    /// repository: then only by digest). Returns the manifest digest.
    pub async fn push_component(
        &self,
        reference: &OciReference,
        component: &[u8],
    ) -> Result<String, PullError> {
        self.authenticate(reference, oci_client::RegistryOperation::Push)
            .await;
        let layer = Descriptor::of(WASM_LAYER_MEDIA_TYPE, component);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "wasm",
            "os": "wasip2",
            "layerDigests": [layer.digest],
        }))
        .unwrap_or_default();
        let config_descriptor = Descriptor::of(WASM_CONFIG_MEDIA_TYPE, &config);
        self.push_blob(reference, component).await?;
        self.push_blob(reference, &config).await?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            artifact_type: None,
            config: config_descriptor,
            layers: vec![layer],
            subject: None,
            annotations: BTreeMap::new(),
        };
        let digest = manifest_digest(&manifest)?;
        let target = match &reference.tag {
            Some(_) => reference.clone(),
            None => reference.at_digest(&digest),
        };
        self.push_manifest(&target, &manifest).await
    }

    /// Pushes `signatures` (one layer each) as the signature artifact of manifest `digest`,
    /// replacing any there.
    pub async fn push_signatures(
        &self,
        reference: &OciReference,
        digest: &str,
        signatures: &[String],
    ) -> Result<(), PullError> {
        let target = reference.at_tag(&signature_tag(digest));
        self.authenticate(&target, oci_client::RegistryOperation::Push)
            .await;
        let empty = b"{}";
        self.push_blob(&target, empty).await?;
        let mut layers = Vec::new();
        for signature in signatures {
            self.push_blob(&target, signature.as_bytes()).await?;
            layers.push(Descriptor::of(
                SIGNATURE_LAYER_MEDIA_TYPE,
                signature.as_bytes(),
            ));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(MANIFEST_MEDIA_TYPE.to_owned()),
            artifact_type: Some(SIGNATURE_ARTIFACT_TYPE.to_owned()),
            config: Descriptor::of(EMPTY_CONFIG_MEDIA_TYPE, empty),
            layers,
            subject: None,
            annotations: BTreeMap::from([(
                "dev.minisign.signed-manifest".to_owned(),
                digest.to_owned(),
            )]),
        };
        self.push_manifest(&target, &manifest).await?;
        Ok(())
    }
}

fn manifest_digest(manifest: &Manifest) -> Result<String, PullError> {
    serde_json::to_vec(manifest)
        .map(|body| format!("sha256:{}", sha256_hex(&body)))
        .map_err(|error| PullError::NotAnArtifact {
            reference: String::new(),
            expected: "manifest",
            reason: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse_and_print() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let pinned = OciReference::parse(&format!("oci://127.0.0.1:5000/plugins/pp@{digest}"))
            .expect("pinned");
        assert_eq!(pinned.registry, "127.0.0.1:5000");
        assert_eq!(pinned.repository, "plugins/pp");
        assert_eq!(pinned.digest.as_deref(), Some(digest.as_str()));
        assert_eq!(
            pinned.to_string(),
            format!("oci://127.0.0.1:5000/plugins/pp@{digest}")
        );
        let tagged = OciReference::parse("oci://registry.example/pp:stable").expect("tag");
        assert_eq!(tagged.tag.as_deref(), Some("stable"));
        assert_eq!(tagged.digest, None);
        for bad in [
            "https://registry.example/pp:1",
            "oci://pp:1",
            "oci://registry.example/pp",
            "oci://registry.example/pp@sha256:abc",
        ] {
            assert!(OciReference::parse(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            signature_tag(&digest),
            format!("sha256-{}.sig", "ab".repeat(32))
        );
    }
}
