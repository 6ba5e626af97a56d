//! The wasmtime host harness: helpers shared by the tests in `tests/tests/all/` (one binary,
//! a module per area) and the benches.
//!
//! Everything here uses the real pieces: the components built from `plugin/` (through the
//! `bundled-plugins` crate) and from `tests/components/` (this crate's build script), loaded by
//! the real [`policy_host::PolicyHost`] from a real directory.

pub mod captcha_vendors;
pub mod dns;
pub mod faults;
pub mod hibp;
pub mod http;
pub mod internal_services;
pub mod log_capture;
pub mod nats;
pub mod postgres;
pub mod process;
pub mod registry;
pub mod replicas;
pub mod service;
pub mod tls_hibp;
pub mod upstream;
pub mod workload_identity;

use policy_host::{
    HostConfig, PasswordInput, PluginConfig, PluginKind, PolicyHost,
    egress::config::{BreakerConfig, CallPolicy, DestinationConfig},
};
use std::{
    future::Future,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// Held by the tests that load both cores for seconds (the fault drills, parallel logins) or
/// assert deadlines and latencies: in the one test binary two of them never run at once, as
/// when each area was a binary of its own.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static EXCLUSIVE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    EXCLUSIVE.lock().await
}

/// Paths of the test components built by `build.rs`.
pub mod components {
    include!(concat!(env!("OUT_DIR"), "/test_components.rs"));
}

/// Path of the bundled breach-check component.
pub fn breach_check_component() -> &'static Path {
    Path::new(bundled_plugins::BREACH_CHECK.path)
}

/// Path of the bundled password-policy component.
pub fn password_policy_component() -> &'static Path {
    Path::new(bundled_plugins::PASSWORD_POLICY.path)
}

/// A plugin directory in a temporary folder, deleted on drop.
pub struct PluginDir {
    dir: tempfile::TempDir,
}

impl PluginDir {
    /// An empty plugin directory.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            dir: tempfile::tempdir()?,
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Publishes `component` as `<name>.wasm` the safe way: write a temporary file, rename.
    pub fn publish(&self, name: &str, component: &Path) -> anyhow::Result<PathBuf> {
        self.publish_bytes(name, &std::fs::read(component)?)
    }

    /// Publishes raw bytes as `<name>.wasm` (for corrupt candidates).
    pub fn publish_bytes(&self, name: &str, bytes: &[u8]) -> anyhow::Result<PathBuf> {
        let target = self.dir.path().join(format!("{name}.wasm"));
        let temporary = self.dir.path().join(format!("{name}.wasm.tmp"));
        std::fs::write(&temporary, bytes)?;
        std::fs::rename(&temporary, &target)?;
        Ok(target)
    }

    /// A host configuration for this directory: watching, default limits, no slots.
    pub fn config(&self) -> HostConfig {
        HostConfig {
            dir: self.path().to_path_buf(),
            watch: true,
            ..HostConfig::default()
        }
    }
}

/// A configuration entry for a slot of `kind` with the given settings.
pub fn slot(kind: PluginKind, settings: &[(&str, &str)]) -> PluginConfig {
    PluginConfig {
        kind: Some(kind),
        settings: settings
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        ..PluginConfig::default()
    }
}

/// A host serving the bundled password-policy plugin from a fresh directory.
pub async fn host_with_password_policy() -> anyhow::Result<(PluginDir, PolicyHost)> {
    let dir = PluginDir::new()?;
    dir.publish("password-policy", password_policy_component())?;
    let host = PolicyHost::start(&dir.config()).await?;
    Ok((dir, host))
}

/// A breach-check slot pointed at `base_url` (a local server, so `allow-private` is on), with
/// `policy` as its destination's call policy and the given extra settings.
pub fn breach_slot(base_url: &str, policy: CallPolicy, settings: &[(&str, &str)]) -> PluginConfig {
    let mut all: Vec<(&str, &str)> = vec![("base-url", base_url)];
    all.extend_from_slice(settings);
    let mut config = slot(PluginKind::BreachCheck, &all);
    config.egress = vec![DestinationConfig {
        url: format!("{base_url}/range/"),
        allow_private: true,
        secrets: Vec::new(),
        cache_ttl: Some(Duration::from_hours(1)),
        idempotency_header: None,
        policy: Some(policy),
    }];
    config
}

/// A call policy for tests: short timeouts, no retries, a breaker that never opens.
pub fn quick_policy() -> CallPolicy {
    CallPolicy {
        connect_timeout: Duration::from_millis(500),
        first_byte_timeout: Duration::from_millis(500),
        between_bytes_timeout: Duration::from_millis(500),
        max_retries: 0,
        breaker: BreakerConfig {
            minimum_calls: 1_000,
            ..BreakerConfig::default()
        },
        ..CallPolicy::default()
    }
}

/// A host serving the bundled breach-check plugin against `base_url`.
pub async fn host_with_breach_check(
    base_url: &str,
    policy: CallPolicy,
    settings: &[(&str, &str)],
) -> anyhow::Result<(PluginDir, PolicyHost)> {
    let dir = PluginDir::new()?;
    dir.publish("breach-check", breach_check_component())?;
    let mut config = dir.config();
    config.slots.insert(
        "breach-check".to_owned(),
        breach_slot(base_url, policy, settings),
    );
    let host = PolicyHost::start(&config).await?;
    Ok((dir, host))
}

/// A password input with no context.
pub fn password(password: &str) -> PasswordInput {
    PasswordInput {
        password: password.to_owned(),
        ..PasswordInput::default()
    }
}

/// Polls `check` until it returns true or `timeout` passes; returns how long it took.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
