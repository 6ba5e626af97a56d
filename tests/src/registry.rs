//! A throwaway OCI registry on 127.0.0.1 for the distribution tests: Docker Distribution
//! (`docker-registry serve CONFIG.yml`, Debian's `docker-registry` package, which `.ci/run`
//! installs when missing) on a free port, with a configuration and storage in a temporary
//! directory. It can be stopped and started again on the same port and storage, to play a
//! registry that is down.
//!
//! Also: signing keys for tests and a helper that pushes a component with its signatures.

use policy_host::source::{
    oci::{OciReference, RegistryClient, RegistryCredentials},
    signature::SigningKey,
};
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A running (or stopped) registry; killed when dropped.
pub struct TestRegistry {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// With `auth: htpasswd`: the one user and its password in force.
    login: Option<(String, String)>,
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
    }
}

fn binary() -> anyhow::Result<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|dir| dir.join("docker-registry"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "docker-registry not found: install the Debian package docker-registry (`.ci/run` does)"
            )
        })
}

impl TestRegistry {
    /// Starts a registry on a free 127.0.0.1 port and waits until `/v2/` answers.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(None).await
    }

    /// Starts a registry that accepts only `user` with `password` (Distribution's
    /// `auth: htpasswd`, bcrypt; it runs on plain HTTP, which Distribution allows and our
    /// client speaks to registries listed as insecure).
    pub async fn start_with_login(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::start_with(Some((user.to_owned(), password.to_owned()))).await
    }

    async fn start_with(login: Option<(String, String)>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("harness-registry-")
            .tempdir()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = format!(
            "version: 0.1\n\
             log:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {root}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n  secret: harness-{port}\n{auth}",
            root = dir.path().join("storage").display(),
            auth = match &login {
                Some(_) => format!(
                    "auth:\n  htpasswd:\n    realm: harness\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                ),
                None => String::new(),
            },
        );
        std::fs::write(dir.path().join("config.yml"), config)?;
        if let Some((user, password)) = &login {
            write_htpasswd(&dir.path().join("htpasswd"), user, password)?;
        }
        let mut registry = Self {
            dir,
            port,
            child: None,
            login,
        };
        registry.resume().await?;
        Ok(registry)
    }

    /// `127.0.0.1:<port>`: what `insecure-registries` lists and references start with.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `oci://127.0.0.1:<port>/<path>`.
    pub fn reference(&self, path: &str) -> String {
        format!("oci://{}/{path}", self.address())
    }

    /// Stops the registry (the storage stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and storage, and waits until it answers.
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::File::create(self.dir.path().join("registry.log"))?;
        let child = Command::new(binary()?)
            .arg("serve")
            .arg(self.dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let url = format!("http://{}/v2/", self.address());
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            let mut request = client.get(&url);
            if let Some((user, password)) = &self.login {
                request = request.basic_auth(user, Some(password));
            }
            if let Ok(response) = request.send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log"))
                    .unwrap_or_default();
                self.child = None;
                anyhow::bail!("docker-registry exited with {status}: {log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("docker-registry did not answer on {url} within 20 s")
    }

    /// Changes the password the registry accepts: rewrites its htpasswd file and restarts it
    /// on the same port and storage (Distribution 2.8 reads the file once, at start).
    pub async fn rotate_password(&mut self, password: &str) -> anyhow::Result<()> {
        let (user, _) = self
            .login
            .take()
            .ok_or_else(|| anyhow::anyhow!("this registry was started without a login"))?;
        write_htpasswd(&self.dir.path().join("htpasswd"), &user, password)?;
        self.login = Some((user, password.to_owned()));
        self.stop();
        self.resume().await
    }

    /// A client for this registry (plain HTTP; with the login in force, if it has one).
    pub fn client(&self) -> RegistryClient {
        let credentials = self
            .login
            .iter()
            .map(|(username, password)| {
                (
                    self.address(),
                    RegistryCredentials {
                        username: username.clone(),
                        password: password.clone(),
                    },
                )
            })
            .collect();
        RegistryClient::new(&[self.address()], credentials)
    }

    /// Pushes `component` to `<path>:<tag>` and, when any, `signatures` as its signature
    /// artifact. Returns `oci://…/<path>@sha256:…`, the pinned reference.
    pub async fn push(
        &self,
        path: &str,
        tag: &str,
        component: &[u8],
        signatures: &[String],
    ) -> anyhow::Result<String> {
        let reference = OciReference::parse(&self.reference(&format!("{path}:{tag}")))?;
        let client = self.client();
        let digest = client.push_component(&reference, component).await?;
        if !signatures.is_empty() {
            client
                .push_signatures(&reference, &digest, signatures)
                .await?;
        }
        Ok(reference.at_digest(&digest).to_string())
    }
}

/// Writes an htpasswd file with one bcrypt entry (the only hash Distribution accepts). Cost 4,
/// bcrypt's minimum: the tests check who may pull, not the hash's strength.
fn write_htpasswd(path: &std::path::Path, user: &str, password: &str) -> anyhow::Result<()> {
    let hash = bcrypt::hash(password, 4)?;
    std::fs::write(path, format!("{user}:{hash}\n"))?;
    Ok(())
}

/// A fresh signing key.
pub fn signing_key() -> SigningKey {
    SigningKey::generate().expect("a fresh minisign key pair")
}

/// `key`'s signature over `bytes`.
pub fn sign(key: &SigningKey, bytes: &[u8]) -> String {
    key.sign(bytes, "harness").expect("signing")
}

/// A `[plugins.trust]` with `keys` (by id) and `threshold`.
pub fn trust(
    keys: &[(&str, &SigningKey)],
    threshold: Option<usize>,
) -> policy_host::source::signature::TrustConfig {
    policy_host::source::signature::TrustConfig {
        keys: keys
            .iter()
            .map(
                |(id, key)| policy_host::source::signature::TrustedKeyConfig {
                    id: (*id).to_owned(),
                    public_key: key.public_key_base64(),
                },
            )
            .collect(),
        threshold,
    }
}
