//! Registry credentials, looked up per request: a fixed user name and password (the `plugin`
//! CLI), or a password held by the host's [`SecretStore`] and read again before every pull,
//! so a password rotated in its file (Kubernetes secret volume, Vault Agent, CSI driver) is
//! used from the next pull on without a restart. The store reads, checks the value is not
//! empty and only then swaps it in: a pull never sees a half-written (emptied) file.

use crate::egress::secrets::SecretStore;
use oci_client::secrets::RegistryAuth;
use std::{collections::BTreeMap, fmt, sync::Arc};

/// Credentials for one registry; the password is never printed.
#[derive(Clone)]
pub struct RegistryCredentials {
    /// The user name.
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A registry login whose password is a secret of a [`SecretStore`].
#[derive(Debug, Clone)]
pub struct SecretLogin {
    /// The user name.
    pub username: String,
    /// The name of the secret holding the password.
    pub password_secret: String,
}

/// Where the credentials for each registry (`host:port`) come from.
#[derive(Clone, Default)]
pub struct RegistryLogins {
    fixed: BTreeMap<String, RegistryCredentials>,
    from_secrets: BTreeMap<String, SecretLogin>,
    secrets: Option<Arc<SecretStore>>,
}

impl fmt::Debug for RegistryLogins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryLogins")
            .field(
                "registries",
                &self
                    .fixed
                    .keys()
                    .chain(self.from_secrets.keys())
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl RegistryLogins {
    /// Fixed credentials per registry.
    pub fn fixed(credentials: BTreeMap<String, RegistryCredentials>) -> Self {
        Self {
            fixed: credentials,
            ..Self::default()
        }
    }

    /// Passwords from `secrets`, read again before each use. Fails, naming the registry and
    /// the secret, when a login names a secret the store does not have.
    pub fn from_secrets(
        logins: BTreeMap<String, SecretLogin>,
        secrets: Arc<SecretStore>,
    ) -> Result<Self, (String, String)> {
        for (registry, login) in &logins {
            if !secrets.contains(&login.password_secret) {
                return Err((
                    registry.clone(),
                    format!(
                        "secret `{}` is not in [plugins.egress.secrets]",
                        login.password_secret
                    ),
                ));
            }
        }
        Ok(Self {
            fixed: BTreeMap::new(),
            from_secrets: logins,
            secrets: Some(secrets),
        })
    }

    /// True when credentials are configured for `registry`.
    pub fn has(&self, registry: &str) -> bool {
        self.fixed.contains_key(registry) || self.from_secrets.contains_key(registry)
    }

    /// The authentication for one request to `registry`, its password as its source holds it
    /// now (a rotated file is re-read and swapped in first; an empty one keeps the old value).
    pub async fn auth(&self, registry: &str) -> RegistryAuth {
        if let Some(credentials) = self.fixed.get(registry) {
            return RegistryAuth::Basic(credentials.username.clone(), credentials.password.clone());
        }
        let (Some(login), Some(secrets)) = (self.from_secrets.get(registry), &self.secrets) else {
            return RegistryAuth::Anonymous;
        };
        let store = secrets.clone();
        let name = login.password_secret.clone();
        // Small file reads, but blocking: off the async threads.
        let password = tokio::task::spawn_blocking(move || store.value_now(&name))
            .await
            .ok()
            .flatten()
            .or_else(|| secrets.value(&login.password_secret));
        match password {
            Some(password) => RegistryAuth::Basic(login.username.clone(), password.to_string()),
            None => RegistryAuth::Anonymous,
        }
    }
}
