//! Versions that arrive as bytes (from the service's desired state) rather than from the
//! slot's source: prepared and smoke-tested like any candidate, then either swapped in as the
//! serving version or held aside as a staged candidate.

use super::{Catalog, ReloadOutcome, lock, prepare};
use crate::{
    artifact_cache::sha256_hex,
    decision::DecisionRecord,
    error::LoadError,
    kind::PluginKind,
    loaded::LoadedPlugin,
    password_policy::{self, PasswordInput},
    rollout::Staging,
    shared_artifact::TrustedArtifact,
};
use std::{collections::BTreeMap, sync::Arc};

impl Catalog {
    /// The staged candidates and the decision log.
    pub fn staging(&self) -> &Staging {
        &self.staging
    }

    /// Compiles, checks and smoke-tests `bytes` for slot `name` with the slot's settings and
    /// `extra_settings` over them, without serving it. `shared`, another replica's compilation
    /// of these bytes (verified), replaces the compilation. A refusal is kept as the slot's last
    /// error, like any refused candidate.
    pub async fn prepare_bytes(
        &self,
        name: &str,
        bytes: Vec<u8>,
        extra_settings: &BTreeMap<String, String>,
        shared: Option<TrustedArtifact>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let slot = self.slots.get(name).ok_or_else(|| LoadError::UnknownSlot {
            name: name.to_owned(),
        })?;
        let result = self
            .prepare_bytes_in(slot, bytes, extra_settings, shared)
            .await;
        if let Err(error) = &result {
            tracing::warn!(plugin = name, %error, "desired version refused; the serving version is unchanged");
            *lock(&slot.last_error) = Some(error.to_string());
        }
        result
    }

    async fn prepare_bytes_in(
        &self,
        slot: &super::Slot,
        bytes: Vec<u8>,
        extra_settings: &BTreeMap<String, String>,
        shared: Option<TrustedArtifact>,
    ) -> Result<Arc<LoadedPlugin>, LoadError> {
        let name = slot.config.name.clone();
        let sha256 = sha256_hex(&bytes);
        if let Some(pinned) = &slot.config.sha256
            && *pinned != sha256
        {
            return Err(LoadError::PinMismatch {
                name,
                pinned: pinned.clone(),
                actual: sha256,
            });
        }
        let engine = self.engine.clone();
        let mut config = slot.config.clone();
        config.settings = slot.settings_with(extra_settings);
        // A candidate gets its own share of instances: a shadow or a canary never takes the
        // serving version's.
        let admission = Arc::new(tokio::sync::Semaphore::new(
            slot.config.max_concurrent as usize,
        ));
        let candidate = tokio::task::spawn_blocking(move || {
            prepare(
                &engine,
                &config,
                &bytes,
                sha256,
                admission,
                None,
                shared.as_ref(),
            )
        })
        .await
        .map_err(|error| LoadError::Internal {
            name: name.clone(),
            message: format!("compilation task failed: {error}"),
        })??;
        Ok(Arc::new(self.smoke_test(candidate).await?))
    }

    /// Makes `plugin` (from [`Catalog::prepare_bytes`]) the serving version of slot `name`,
    /// keeping the one it replaces for rollback.
    pub fn install(
        &self,
        name: &str,
        plugin: Arc<LoadedPlugin>,
    ) -> Result<ReloadOutcome, LoadError> {
        let slot = self.slots.get(name).ok_or_else(|| LoadError::UnknownSlot {
            name: name.to_owned(),
        })?;
        let to = plugin.identity.clone();
        let _swapping = lock(&slot.swapping);
        let from = slot.current.swap(Some(plugin));
        let from_identity = from.as_ref().map(|from| from.identity.clone());
        if from.is_some() {
            *lock(&slot.previous) = from;
        }
        *lock(&slot.last_error) = None;
        tracing::info!(
            plugin = name,
            version = &*to.version,
            sha256 = &*to.sha256,
            "desired version swapped in"
        );
        Ok(ReloadOutcome::Swapped {
            from: from_identity,
            to,
        })
    }

    /// Puts the slot's settings with `extra` over them on `plugin` when they differ (run-time
    /// overrides may have replaced them); true when they changed.
    pub fn refresh_settings(
        &self,
        name: &str,
        plugin: &LoadedPlugin,
        extra: &BTreeMap<String, String>,
    ) -> bool {
        let Some(slot) = self.slots.get(name) else {
            return false;
        };
        let wanted = slot.settings_with(extra);
        if **plugin.settings.load() == wanted {
            return false;
        }
        plugin.settings.store(Arc::new(wanted));
        true
    }

    /// Keeps `message` as slot `name`'s last error (a desired version that could not even be
    /// read, e.g. missing bytes).
    pub fn record_error(&self, name: &str, message: String) {
        if let Some(slot) = self.slots.get(name) {
            *lock(&slot.last_error) = Some(message);
        }
    }

    /// Judges `input` with `plugin` (a staged candidate of slot `name`), applying the slot's
    /// fail policy when it fails, like the serving version's decisions.
    pub async fn evaluate_password_on(
        &self,
        name: &str,
        plugin: &Arc<LoadedPlugin>,
        input: &PasswordInput,
    ) -> DecisionRecord {
        let outcome = async {
            let _instance = plugin.admit(&self.engine).await?;
            let decision = password_policy::evaluate(&self.engine, plugin, input).await?;
            plugin.count_decision();
            Ok(decision)
        };
        match outcome.await {
            Ok(decision) => DecisionRecord {
                decision,
                plugin: Some(plugin.identity.clone()),
                fail_policy_applied: None,
            },
            Err(error) => {
                let policy = self.slots.get(name).map_or_else(
                    || crate::FailPolicy::default_for(PluginKind::PasswordPolicy),
                    |slot| slot.config.fail_policy,
                );
                DecisionRecord {
                    decision: policy.decide(PluginKind::PasswordPolicy, &error),
                    plugin: Some(plugin.identity.clone()),
                    fail_policy_applied: Some(error),
                }
            }
        }
    }
}

impl LoadedPlugin {
    /// The settings this version's decisions see now.
    pub fn settings_snapshot(&self) -> Arc<BTreeMap<String, String>> {
        self.settings.load_full()
    }
}

impl super::Slot {
    /// The world this slot's plugins implement.
    pub fn kind(&self) -> PluginKind {
        self.config.kind
    }

    /// The slot's effective settings with `extra` over them.
    fn settings_with(&self, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut settings = self.effective_settings();
        settings.extend(
            extra
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        settings
    }
}
