//! Security policies from the Configuration Service: fetched at start with a bounded wait,
//! kept on disk as the last known good copy, refreshed in the background with jitter, served
//! stale on error for a bounded time, and applied to the plugins' settings without a restart.
//!
//! Where the policy comes from, in order: the Configuration Service; if it does not answer in
//! time at start, the last known good copy on disk; if there is none (or it is older than
//! `max-stale-ms`), the file configuration alone (plugin settings and no tenant rules).

pub mod document;

use self::document::SecurityPolicies;
use crate::outbound::{InternalClient, InternalRequest, scrub::describe_response};
use arc_swap::ArcSwap;
use http::Method;
use policy_host::catalog::Catalog;
use serde::{Deserialize, Serialize};
use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use tokio::task::JoinHandle;

/// `[security-policies]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct SecurityPoliciesConfig {
    /// Logical name of the Configuration Service (`service`); unset: file configuration only.
    pub service: Option<String>,
    /// Path of the document (`path`).
    pub path: String,
    /// How long start-up waits for the first fetch (`start-timeout-ms`).
    pub start_timeout_ms: u64,
    /// Time for one fetch, retries included (`fetch-timeout-ms`).
    pub fetch_timeout_ms: u64,
    /// Background refresh period (`refresh-interval-ms`), jittered by ±`refresh-jitter`.
    pub refresh_interval_ms: u64,
    /// Share of the interval the refresh may move by (`refresh-jitter`, 0..1), so replicas
    /// don't all ask at once.
    pub refresh_jitter: f64,
    /// How long a policy may be served after the last successful fetch while fetches fail
    /// (`max-stale-ms`); past it the file configuration takes over again.
    pub max_stale_ms: u64,
    /// The last known good copy (`cache-file`).
    pub cache_file: PathBuf,
}

impl Default for SecurityPoliciesConfig {
    fn default() -> Self {
        Self {
            service: None,
            path: "/config/user-service/security-policies".to_owned(),
            start_timeout_ms: 2000,
            fetch_timeout_ms: 2000,
            refresh_interval_ms: 60_000,
            refresh_jitter: 0.1,
            max_stale_ms: 24 * 3600 * 1000,
            cache_file: PathBuf::from("data/config/security-policies.json"),
        }
    }
}

/// Where the policy in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicySource {
    /// The Configuration Service, this run.
    ConfigurationService,
    /// The copy on disk from an earlier run.
    LastKnownGood,
    /// No document: the file configuration alone.
    FileConfiguration,
}

/// What the admin API reports.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// Where the policies in force came from.
    pub source: PolicySource,
    /// Their version, when the service sent one.
    pub version: Option<String>,
    /// Unix seconds of the last successful fetch of the document in force.
    pub fetched_at: Option<u64>,
    /// The last refresh error, until a refresh succeeds.
    pub last_error: Option<String>,
    /// Refreshes that failed since the last success.
    pub refresh_failures: u64,
    /// The policies in force.
    pub policies: Option<SecurityPolicies>,
}

/// The plugin slots a policy document configures.
#[derive(Debug, Clone)]
pub struct PolicySlots {
    /// The password-policy slot, if enabled.
    pub password_policy: Option<String>,
    /// The breach-check slot, if enabled.
    pub breach_check: Option<String>,
    /// The CAPTCHA slot, if enabled.
    pub captcha: Option<String>,
}

/// Fetches, keeps and applies the security policies.
pub struct SecurityPolicyService {
    config: SecurityPoliciesConfig,
    client: Arc<InternalClient>,
    catalog: Arc<Catalog>,
    slots: PolicySlots,
    current: ArcSwap<Option<SecurityPolicies>>,
    status: Mutex<PolicyStatus>,
    refresh: Mutex<Option<JoinHandle<()>>>,
}

impl SecurityPolicyService {
    /// Starts on the best policy available within `start-timeout-ms` and, when a
    /// Configuration Service is configured, spawns the background refresh.
    pub async fn start(
        config: SecurityPoliciesConfig,
        client: Arc<InternalClient>,
        catalog: Arc<Catalog>,
        slots: PolicySlots,
    ) -> Arc<Self> {
        let service = Arc::new(Self {
            config,
            client,
            catalog,
            slots,
            current: ArcSwap::from_pointee(None),
            status: Mutex::new(PolicyStatus {
                source: PolicySource::FileConfiguration,
                version: None,
                fetched_at: None,
                last_error: None,
                refresh_failures: 0,
                policies: None,
            }),
            refresh: Mutex::new(None),
        });
        if service.config.service.is_none() {
            return service;
        }
        let first = tokio::time::timeout(
            Duration::from_millis(service.config.start_timeout_ms),
            service.fetch(),
        )
        .await
        .unwrap_or_else(|_| Err("no answer within start-timeout-ms".to_owned()));
        match first {
            Ok(policies) => {
                service.accept(policies, PolicySource::ConfigurationService, now_secs());
            }
            Err(error) => {
                service.record_failure(&error);
                match service.read_last_known_good() {
                    Some((policies, fetched_at)) => {
                        tracing::warn!(%error, file = %service.config.cache_file.display(), "Configuration Service unavailable at start; using the last known good security policies");
                        service.accept(policies, PolicySource::LastKnownGood, fetched_at);
                    }
                    None => {
                        tracing::warn!(%error, "Configuration Service unavailable at start and no last known good copy; using the file configuration");
                    }
                }
            }
        }
        *lock(&service.refresh) = Some(tokio::spawn(service.clone().refresh_forever()));
        service
    }

    /// The background refresh task, for its owner to stop (taken once).
    pub fn refresh_task(&self) -> Option<JoinHandle<()>> {
        lock(&self.refresh).take()
    }

    /// The document in force, if any.
    pub fn current(&self) -> Arc<Option<SecurityPolicies>> {
        self.current.load_full()
    }

    /// What the admin API reports.
    pub fn status(&self) -> PolicyStatus {
        lock(&self.status).clone()
    }

    /// `Err` with the allowed domains when `email` may not register for `tenant`.
    pub fn check_email_domain(&self, tenant: &str, email: &str) -> Result<(), Vec<String>> {
        match &*self.current() {
            Some(policies) => policies.check_email_domain(tenant, email),
            None => Ok(()),
        }
    }

    async fn refresh_forever(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.next_refresh_delay()).await;
            self.refresh_once().await;
        }
    }

    /// One refresh: apply a changed document, or record the failure and drop a policy that
    /// has been stale for too long.
    pub async fn refresh_once(&self) {
        match self.fetch().await {
            Ok(policies) => {
                let changed = self.current().as_ref().as_ref() != Some(&policies);
                if changed {
                    tracing::info!(version = ?policies.version, "security policies changed upstream; applying");
                }
                self.accept(policies, PolicySource::ConfigurationService, now_secs());
            }
            Err(error) => {
                tracing::warn!(%error, "security-policy refresh failed; keeping the policy in force");
                self.record_failure(&error);
                let status = self.status();
                let age = status
                    .fetched_at
                    .map(|fetched| now_secs().saturating_sub(fetched) * 1000);
                if status.source != PolicySource::FileConfiguration
                    && age.is_some_and(|age| age > self.config.max_stale_ms)
                {
                    tracing::error!(
                        "security policies are older than max-stale-ms; reverting to the file configuration"
                    );
                    self.apply(None);
                    let mut status = lock(&self.status);
                    status.source = PolicySource::FileConfiguration;
                    status.version = None;
                    status.fetched_at = None;
                    status.policies = None;
                }
            }
        }
    }

    fn next_refresh_delay(&self) -> Duration {
        let base = self.config.refresh_interval_ms.max(10) as f64;
        let jitter = self.config.refresh_jitter.clamp(0.0, 1.0);
        let factor = 1.0 + jitter * (fastrand::f64() * 2.0 - 1.0);
        Duration::from_millis((base * factor) as u64)
    }

    async fn fetch(&self) -> Result<SecurityPolicies, String> {
        let service = self.config.service.as_deref().unwrap_or_default();
        let response = self
            .client
            .send(&InternalRequest {
                service,
                method: Method::GET,
                path: &self.config.path,
                json: None,
                idempotency_key: None,
                headers: Vec::new(),
                timeout: Duration::from_millis(self.config.fetch_timeout_ms),
            })
            .await
            .map_err(|error| self.client.scrubber().scrub(&error.to_string()))?;
        if response.status != http::StatusCode::OK {
            return Err(describe_response(
                service,
                response.status,
                response.body.len(),
            ));
        }
        // A parse error may quote a value of the document: scrubbed like every outbound error.
        SecurityPolicies::parse(&response.body)
            .map_err(|error| self.client.scrubber().scrub(&format!("{service}: {error}")))
    }

    /// Puts `policies` in force, remembers it on disk when it came from upstream.
    fn accept(&self, policies: SecurityPolicies, source: PolicySource, fetched_at: u64) {
        if source == PolicySource::ConfigurationService
            && let Err(error) = write_last_known_good(&self.config.cache_file, &policies)
        {
            tracing::warn!(%error, "cannot keep the last known good security policies on disk");
        }
        self.apply(Some(policies.clone()));
        let mut status = lock(&self.status);
        status.source = source;
        status.version = policies.version.clone();
        status.fetched_at = Some(fetched_at);
        status.policies = Some(policies);
        if source == PolicySource::ConfigurationService {
            status.last_error = None;
        }
    }

    fn record_failure(&self, error: &str) {
        metrics::counter!("security_policy_refresh_failures_total").increment(1);
        let mut status = lock(&self.status);
        status.last_error = Some(error.to_owned());
        status.refresh_failures += 1;
    }

    /// Sets (or clears) the plugin setting overrides and the document in force.
    fn apply(&self, policies: Option<SecurityPolicies>) {
        let empty = SecurityPolicies::default();
        let document = policies.as_ref().unwrap_or(&empty);
        let overrides = [
            (&self.slots.password_policy, document.password_settings()),
            (&self.slots.breach_check, document.breach_settings()),
            (&self.slots.captcha, document.captcha_settings()),
        ];
        for (slot, settings) in overrides {
            let Some(slot) = slot.as_deref() else {
                continue;
            };
            if self.catalog.slot(slot).is_none() {
                continue;
            }
            if let Err(error) = self.catalog.set_setting_overrides(slot, settings) {
                tracing::error!(%error, slot, "cannot apply security policies to a plugin");
            }
        }
        self.current.store(Arc::new(policies));
    }

    fn read_last_known_good(&self) -> Option<(SecurityPolicies, u64)> {
        let path = &self.config.cache_file;
        let bytes = std::fs::read(path).ok()?;
        let fetched_at = std::fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .ok()
            .and_then(|modified| modified.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |age| age.as_secs());
        if now_secs().saturating_sub(fetched_at) * 1000 > self.config.max_stale_ms {
            tracing::warn!(file = %path.display(), "the last known good security policies are older than max-stale-ms; ignoring them");
            return None;
        }
        match SecurityPolicies::parse(&bytes) {
            Ok(policies) => Some((policies, fetched_at)),
            Err(error) => {
                tracing::warn!(file = %path.display(), %error, "ignoring an unreadable last known good copy");
                None
            }
        }
    }
}

/// Writes the copy atomically (temporary file, sync, rename): a crash leaves the old or the
/// new copy, never half of one.
fn write_last_known_good(path: &Path, policies: &SecurityPolicies) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&serde_json::to_vec_pretty(policies).map_err(std::io::Error::other)?)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
