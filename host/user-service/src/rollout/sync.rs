//! Keeps this replica on the desired state: reads it on every hint (PostgreSQL `LISTEN`) and on
//! a timer (the truth: notifications sent while the listener reconnects are lost), loads what
//! changed through the catalog's usual validation, stages or drops candidates, records the
//! automatic aborts, and writes this replica's fleet rows.

use super::{
    artifacts::SharedArtifacts,
    desired_state::{Desired, Version, digest_of},
};
use crate::store::{DesiredChange, FleetRow, Store};
use policy_host::{catalog::Catalog, loaded::LoadedPlugin};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};
use tokio::{sync::Notify, task::JoinHandle};

/// The PostgreSQL notification channel of desired-state changes (payload: the slot).
pub const CHANNEL: &str = "plugin_desired";

/// What this replica has applied of one slot's desired state.
#[derive(Default)]
struct Applied {
    revision: i64,
    /// Key ([`Version::key`]) of the desired serving version in place.
    serving: Option<String>,
    /// The staged candidate's key and code (kept for a promotion without recompiling).
    candidate: Option<(String, Arc<LoadedPlugin>)>,
    /// A version refused here, with why: not retried until the desired state changes it.
    refused: Option<(String, String)>,
    /// A revision whose candidate this replica aborted on its own.
    aborted_revision: Option<i64>,
    /// Milliseconds since the epoch of the last swap or staging.
    last_activation: Option<i64>,
    last_error: Option<String>,
}

/// The follower of one replica.
pub struct RolloutSync {
    store: Store,
    catalog: Arc<Catalog>,
    replica: String,
    config: super::config::RolloutConfig,
    artifacts: Arc<SharedArtifacts>,
    /// Woken by the listener (and by admin writes on this replica).
    pub hint: Arc<Notify>,
    applied: tokio::sync::Mutex<BTreeMap<String, Applied>>,
    last_heartbeat: Mutex<Option<Instant>>,
}

fn now_ms() -> i64 {
    crate::store::now_micros() / 1000
}

impl RolloutSync {
    /// A follower for this replica (`replica` is its fleet id) that loads versions through
    /// `artifacts` when it can; start it with [`RolloutSync::spawn`].
    pub fn new(
        store: Store,
        catalog: Arc<Catalog>,
        replica: String,
        config: super::config::RolloutConfig,
        artifacts: Arc<SharedArtifacts>,
    ) -> Self {
        Self {
            store,
            catalog,
            replica,
            config,
            artifacts,
            hint: Arc::new(Notify::new()),
            applied: tokio::sync::Mutex::new(BTreeMap::new()),
            last_heartbeat: Mutex::new(None),
        }
    }

    /// The compiled artifacts shared with the other replicas.
    pub fn artifacts(&self) -> &Arc<SharedArtifacts> {
        &self.artifacts
    }

    /// This replica's id in the fleet.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Starts the follower (and, on PostgreSQL, the listener that hints it).
    pub fn spawn(self: Arc<Self>, database_url: &str) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        if database_url.starts_with("postgres") {
            tasks.push(tokio::spawn(listen(
                database_url.to_owned(),
                self.hint.clone(),
            )));
        }
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = self.hint.notified() => {}
                    () = self.catalog.staging().abort_signal.notified() => {}
                    () = tokio::time::sleep(self.config.poll_interval()) => {}
                }
                self.tick().await;
            }
        }));
        tasks
    }

    /// One round: records automatic aborts, applies the desired state, writes the fleet rows
    /// when something changed or the heartbeat is due. Errors are logged and kept per slot.
    pub async fn tick(&self) {
        let mut changed = self.record_aborts().await;
        match self.store.desired_all().await {
            Ok(rows) => {
                for row in rows {
                    match Desired::parse(&row) {
                        Ok(desired) => changed |= self.apply(&desired).await,
                        Err(error) => {
                            tracing::warn!(%error, "cannot read the desired plugin state");
                        }
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot read the desired plugin state"),
        }
        let due = self
            .last_heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .is_none_or(|last| last.elapsed() >= self.config.heartbeat_interval());
        if changed || due {
            self.heartbeat().await;
        }
    }

    /// Writes the automatic aborts of this replica into the desired state (only if the plan
    /// they aborted is still the desired one) and hints every replica.
    async fn record_aborts(&self) -> bool {
        let aborts = self.catalog.staging().take_aborts();
        let mut applied = self.applied.lock().await;
        for abort in &aborts {
            applied
                .entry(abort.slot.clone())
                .or_default()
                .aborted_revision = Some(abort.revision);
            let note = format!(
                "aborted automatically on {}: {}",
                self.replica, abort.reason
            );
            match self
                .store
                .change_desired(
                    &abort.slot,
                    DesiredChange::Abort { note: &note },
                    Some(abort.revision),
                )
                .await
            {
                Ok(_) => {
                    if let Err(error) = self.store.notify_desired_changed(&abort.slot).await {
                        tracing::debug!(%error, "no rollout hint sent");
                    }
                }
                Err(error) => {
                    tracing::warn!(plugin = %abort.slot, %error, "cannot record an automatic abort");
                }
            }
        }
        !aborts.is_empty()
    }

    /// Brings one slot to `desired`; true when anything changed.
    async fn apply(&self, desired: &Desired) -> bool {
        if self.catalog.slot(&desired.slot).is_none() {
            return false;
        }
        let mut all = self.applied.lock().await;
        let applied = all.entry(desired.slot.clone()).or_default();
        let mut changed = applied.revision != desired.revision;
        if let Some(version) = &desired.serving {
            changed |= self.apply_serving(&desired.slot, version, applied).await;
        }
        match &desired.candidate {
            Some((version, plan)) if applied.aborted_revision != Some(desired.revision) => {
                let staged = self.catalog.staging().get(&desired.slot);
                if staged.is_none_or(|staged| staged.plan != *plan) {
                    changed = true;
                    match self.load(&desired.slot, version, applied).await {
                        Some(plugin) => {
                            self.catalog.staging().stage(
                                &desired.slot,
                                plan.clone(),
                                plugin.clone(),
                            );
                            applied.candidate = Some((version.key(), plugin));
                            applied.last_activation = Some(now_ms());
                            tracing::info!(plugin = %desired.slot, stage = ?plan.stage, revision = desired.revision, "candidate staged");
                        }
                        None => {
                            self.catalog.staging().clear(&desired.slot);
                        }
                    }
                }
            }
            _ => {
                if self.catalog.staging().clear(&desired.slot).is_some() {
                    changed = true;
                    tracing::info!(plugin = %desired.slot, revision = desired.revision, "candidate withdrawn");
                }
                applied.candidate = None;
            }
        }
        applied.revision = desired.revision;
        changed
    }

    /// Swaps in the desired serving version unless it serves already; true when it swapped.
    async fn apply_serving(&self, slot: &str, version: &Version, applied: &mut Applied) -> bool {
        let key = version.key();
        let serving = self
            .catalog
            .slot(slot)
            .and_then(policy_host::catalog::Slot::current);
        if let Some(serving) = &serving
            && format!("sha256:{}", serving.identity.sha256) == version.digest
        {
            // Already serving (e.g. from the replica's own directory): settings are all that
            // may differ, and run-time overrides may have replaced them. No recompilation.
            let changed = self
                .catalog
                .refresh_settings(slot, serving, &version.settings);
            applied.serving = Some(key);
            return changed;
        }
        let Some(plugin) = self.load(slot, version, applied).await else {
            return false;
        };
        match self.catalog.install(slot, plugin) {
            Ok(_) => {
                applied.serving = Some(key);
                applied.last_activation = Some(now_ms());
                applied.last_error = None;
                true
            }
            Err(error) => {
                applied.last_error = Some(error.to_string());
                false
            }
        }
    }

    /// The code of `version`: the staged candidate's when it is the same version (a promotion
    /// needs no compilation), else read from the database and validated like any candidate.
    /// `None` when it is refused (the error is kept, and the same version is not retried).
    async fn load(
        &self,
        slot: &str,
        version: &Version,
        applied: &mut Applied,
    ) -> Option<Arc<LoadedPlugin>> {
        let key = version.key();
        if let Some((candidate_key, plugin)) = &applied.candidate
            && *candidate_key == key
        {
            return Some(plugin.clone());
        }
        if applied
            .refused
            .as_ref()
            .is_some_and(|(refused, _)| *refused == key)
        {
            return None;
        }
        let result = match self.store.component(&version.digest).await {
            Ok(Some(bytes)) if digest_of(&bytes) == version.digest => {
                // Another replica's compilation, when one verifies: no Cranelift here.
                let sha256 = version.digest.trim_start_matches("sha256:");
                let shared = self.artifacts.fetch(sha256).await;
                self.catalog
                    .prepare_bytes(slot, bytes, &version.settings, shared)
                    .await
                    .map_err(|error| error.to_string())
            }
            Ok(Some(_)) => Err(format!(
                "the stored bytes of {} do not hash to it",
                version.digest
            )),
            Ok(None) => Err(format!("no component is stored under {}", version.digest)),
            // The database may be back at the next round: not a refusal.
            Err(error) => {
                tracing::warn!(plugin = slot, %error, "cannot read a desired component");
                return None;
            }
        };
        match result {
            Ok(plugin) => Some(plugin),
            Err(error) => {
                self.catalog.record_error(slot, error.clone());
                applied.last_error = Some(error.clone());
                applied.refused = Some((key, error));
                None
            }
        }
    }

    /// Writes this replica's row for every slot.
    pub async fn heartbeat(&self) {
        *self
            .last_heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        let applied = self.applied.lock().await;
        let now = now_ms();
        for status in self.catalog.status() {
            if !status.enabled {
                continue;
            }
            let mine = applied.get(&status.name);
            let staged = self.catalog.staging().get(&status.name);
            let row = FleetRow {
                replica: self.replica.clone(),
                slot: status.name.clone(),
                serving_digest: status
                    .current
                    .as_ref()
                    .map(|current| format!("sha256:{}", current.identity.sha256)),
                serving_version: status
                    .current
                    .as_ref()
                    .map(|current| current.identity.version.to_string()),
                candidate_digest: staged
                    .as_ref()
                    .map(|staged| format!("sha256:{}", staged.plugin.identity.sha256)),
                stage: staged
                    .as_ref()
                    .map_or("serving", |staged| match staged.plan.stage {
                        policy_host::rollout::StageKind::Shadow => "shadow",
                        policy_host::rollout::StageKind::Canary => "canary",
                    })
                    .to_owned(),
                revision: mine.map_or(0, |mine| mine.revision),
                last_activation: mine.and_then(|mine| mine.last_activation),
                last_error: mine
                    .and_then(|mine| mine.last_error.clone())
                    .or(status.last_error.clone()),
                heartbeat: now,
                diff: staged
                    .as_ref()
                    .and_then(|staged| serde_json::to_string(&staged.diff.report()).ok()),
            };
            if let Err(error) = self.store.report_fleet(&row).await {
                tracing::warn!(%error, "cannot write the fleet row");
            }
        }
    }
}

/// Listens for desired-state changes and hints the follower; reconnects after a failure (the
/// poll covers what is lost meanwhile).
async fn listen(url: String, hint: Arc<Notify>) {
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            loop {
                listener.recv().await?;
                hint.notify_one();
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        if let Err(error) = listener.await {
            tracing::warn!(%error, "rollout listener lost; reconnecting (the poll still runs)");
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
