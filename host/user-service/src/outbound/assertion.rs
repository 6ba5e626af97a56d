//! Workload identity for the client-credentials grant: instead of a shared client secret, the
//! service proves who it is with a JWT (`client_assertion_type =
//! urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, RFC 7521/7523):
//!
//! - **`private-key-jwt`** (RFC 7523 §2.2, OpenID Connect `private_key_jwt`): a short-lived JWT
//!   signed with the service's own key, `iss` = `sub` = the client id, `aud` = the token
//!   endpoint, a unique `jti`, `iat` and `exp`. The key is a PEM file (PKCS#8 EC, RSA or
//!   Ed25519) that may rotate.
//! - **`service-account-token`**: a Kubernetes projected service-account token, read from its
//!   file (the kubelet rewrites it before it expires) and sent as it is.
//!
//! Both files are held in a [`SecretStore`]: re-read before every token request and every
//! second, swapped in atomically, a rotation logged by name and counted
//! (`secret_rotations_total{secret}`). A key file that does not parse (half written) is not
//! used: the last key that parsed stays in force until a good one arrives.

use egress::{config::SecretSource, secrets::SecretStore};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    path::PathBuf,
    str::FromStr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Name of the signing key in the secret store (and in rotation logs and metrics).
const KEY: &str = "service-auth-key";
/// Name of the service-account token in the secret store.
const SA_TOKEN: &str = "service-account-token";
/// How often the files are checked for rotation between token requests.
const ROTATION_CHECK: Duration = Duration::from_secs(1);

/// `[service-auth] client-assertion`: how the service authenticates without a client secret.
#[derive(Debug, Clone, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum ClientAssertionConfig {
    /// Sign a fresh JWT with the service's key for every token request.
    PrivateKeyJwt {
        /// The PEM private key (`key = { file = "/var/run/secrets/user-service/key.pem" }`).
        key: SecretSource,
        /// JWS algorithm (`algorithm`): `ES256` (default), `ES384`, `RS256`, `PS256`, `EdDSA`.
        #[serde(default = "default_algorithm")]
        algorithm: String,
        /// `kid` header, when the token endpoint knows several keys of this client (`key-id`).
        #[serde(default)]
        key_id: Option<String>,
        /// Lifetime of each assertion, in seconds (`lifetime-s`, default 60).
        #[serde(default = "default_lifetime_s")]
        lifetime_s: u64,
    },
    /// Send the projected service-account token read from `path`.
    ServiceAccountToken {
        /// E.g. `/var/run/secrets/tokens/user-service` (a projected volume with an audience).
        path: PathBuf,
    },
}

fn default_algorithm() -> String {
    "ES256".to_owned()
}

fn default_lifetime_s() -> u64 {
    60
}

/// The claims of a `private_key_jwt` assertion.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    jti: String,
    iat: u64,
    exp: u64,
}

/// Produces client assertions.
pub struct ClientAssertion {
    config: ClientAssertionConfig,
    client_id: String,
    audience: String,
    files: Arc<SecretStore>,
    /// The key value last parsed and its parsed form (parsing is done once per rotation).
    parsed: Mutex<Option<(Arc<str>, Arc<EncodingKey>)>>,
    algorithm: Algorithm,
    /// The latest assertion sent, for scrubbing.
    last: Mutex<Option<String>>,
}

impl ClientAssertion {
    /// Reads the key or token file (it must exist and be non-empty; a key must parse) for
    /// `client_id` at the token endpoint `audience`.
    pub fn new(
        config: ClientAssertionConfig,
        client_id: &str,
        audience: &str,
    ) -> Result<Self, String> {
        let (name, source, algorithm) = match &config {
            ClientAssertionConfig::PrivateKeyJwt { key, algorithm, .. } => (
                KEY,
                key.clone(),
                Algorithm::from_str(algorithm)
                    .map_err(|_| format!("client-assertion: unknown algorithm `{algorithm}`"))?,
            ),
            ClientAssertionConfig::ServiceAccountToken { path } => {
                (SA_TOKEN, SecretSource::File(path.clone()), Algorithm::ES256)
            }
        };
        let files = Arc::new(
            SecretStore::load(&BTreeMap::from([(name.to_owned(), source)]))
                .map_err(|error| format!("client-assertion: {error}"))?,
        );
        files.watch(ROTATION_CHECK);
        let assertion = Self {
            config,
            client_id: client_id.to_owned(),
            audience: audience.to_owned(),
            files,
            parsed: Mutex::new(None),
            algorithm,
            last: Mutex::new(None),
        };
        if matches!(
            assertion.config,
            ClientAssertionConfig::PrivateKeyJwt { .. }
        ) {
            assertion.key()?;
        }
        Ok(assertion)
    }

    /// A client assertion for one token request: a freshly signed JWT, or the service-account
    /// token in force. The files are re-read first, so a rotation is used from this request on.
    pub fn assertion(&self) -> Result<String, String> {
        self.files.refresh();
        let assertion = match &self.config {
            ClientAssertionConfig::ServiceAccountToken { .. } => self
                .files
                .value(SA_TOKEN)
                .map(|token| token.to_string())
                .ok_or("the service-account token is not set")?,
            ClientAssertionConfig::PrivateKeyJwt {
                key_id, lifetime_s, ..
            } => {
                let key = self.key()?;
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |elapsed| elapsed.as_secs());
                let mut jti = [0u8; 16];
                getrandom::fill(&mut jti).map_err(|error| format!("no randomness: {error}"))?;
                let claims = Claims {
                    iss: &self.client_id,
                    sub: &self.client_id,
                    aud: &self.audience,
                    jti: hex::encode(jti),
                    iat: now,
                    exp: now + (*lifetime_s).max(1),
                };
                let mut header = Header::new(self.algorithm);
                header.kid = key_id.clone();
                jsonwebtoken::encode(&header, &claims, &key)
                    .map_err(|error| format!("cannot sign the client assertion: {error}"))?
            }
        };
        *self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(assertion.clone());
        Ok(assertion)
    }

    /// The signing key in force: the current file's, parsed once per rotation; when the
    /// current file does not parse (being written), the last key that did.
    fn key(&self) -> Result<Arc<EncodingKey>, String> {
        let value = self.files.value(KEY).ok_or("the signing key is not set")?;
        let mut parsed = self
            .parsed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((seen, key)) = parsed.as_ref()
            && **seen == *value
        {
            return Ok(key.clone());
        }
        match parse_key(self.algorithm, value.as_bytes()) {
            Ok(key) => {
                let key = Arc::new(key);
                *parsed = Some((value, key.clone()));
                Ok(key)
            }
            Err(error) => match parsed.as_ref() {
                Some((_, previous)) => {
                    tracing::warn!(secret = KEY, %error, "the signing key file does not parse; the previous key stays in force");
                    Ok(previous.clone())
                }
                None => Err(format!("the signing key ({KEY}) does not parse: {error}")),
            },
        }
    }

    /// What must never be logged: the service-account token and the latest assertion.
    pub fn sensitive_values(&self) -> Vec<String> {
        let mut values: Vec<String> = self
            .files
            .value(SA_TOKEN)
            .map(|token| token.to_string())
            .into_iter()
            .collect();
        values.extend(
            self.last
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone(),
        );
        values
    }
}

/// Parses a PEM private key for `algorithm`.
fn parse_key(algorithm: Algorithm, pem: &[u8]) -> Result<EncodingKey, String> {
    let parsed = match algorithm {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem),
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => EncodingKey::from_rsa_pem(pem),
        other => return Err(format!("{other:?} is not a signature algorithm")),
    };
    parsed.map_err(|error| error.to_string())
}
