//! The plugin catalog: one slot per plugin, hot swap, rollback.
//!
//! A candidate is read, pinned, compiled, checked against its slot's world and smoke-tested
//! before it is swapped in with one atomic pointer store. Decisions already running hold their
//! own `Arc` to the old version and finish on it. A candidate that fails any step is rejected,
//! the error is kept for the admin API, and the serving version is untouched.

use crate::{
    artifact_cache::sha256_hex,
    bindings::{
        breach_check::BreachCheckPre, captcha::CaptchaPre, password_policy::PasswordPolicyPre,
    },
    config::{HostConfig, ResolvedSlot},
    decision::PluginIdentity,
    // Its data stays consistent even if a holder panicked (plain assignments).
    egress::{Caller, CallerPolicy, lock::lock},
    engine::PolicyEngine,
    error::{LoadError, PluginError},
    kind::{self, PluginKind},
    loaded::{LoadedPlugin, PreInstance},
    password_policy,
    source::{Candidate, Distribution, Origin, PullPolicy, SlotSource},
};
use arc_swap::ArcSwapOption;

// Rollout hook: versions that arrive as bytes, and staged candidates.
mod candidates;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::SystemTime,
};

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new version now serves.
    Swapped {
        /// The version that served before, if any.
        from: Option<PluginIdentity>,
        /// The version that serves now.
        to: PluginIdentity,
    },
    /// The file holds the version already serving; nothing changed.
    Unchanged(PluginIdentity),
}

/// Why a rollback did not happen.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RollbackError {
    /// No slot has this name (the payload).
    #[error("no plugin slot named `{0}`")]
    UnknownSlot(String),
    /// The slot (the payload) has served at most one version since the host started.
    #[error("plugin `{0}` has no previous version to roll back to")]
    NoPreviousVersion(String),
}

/// A slot's state, for the admin API.
#[derive(Debug, Clone)]
pub struct SlotStatus {
    /// The slot's name, as configured.
    pub name: String,
    /// The world its plugins implement.
    pub kind: PluginKind,
    /// False when the configuration says never to load it.
    pub enabled: bool,
    /// The version serving now; `None` before a first successful load.
    pub current: Option<VersionStatus>,
    /// The version a rollback would put back (after a rollback, the one it replaced).
    pub previous: Option<PluginIdentity>,
    /// Why the last candidate was rejected; cleared by the next successful or unchanged load.
    pub last_error: Option<String>,
    /// Where the slot's candidates come from and how the serving one was obtained.
    pub source: SourceStatus,
}

/// A slot's source, for the admin API.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    /// `file` or the `oci://` reference in force.
    pub source: String,
    /// Whether candidates must carry enough trusted signatures.
    pub require_signature: bool,
    /// How the serving version's bytes were obtained (registry, cache and why, file).
    pub origin: Option<Origin>,
    /// A source set at run time that is still being pulled and verified.
    pub pending: Option<String>,
}

/// A loaded version, for the admin API.
#[derive(Debug, Clone)]
pub struct VersionStatus {
    /// Name, version and content hash.
    pub identity: PluginIdentity,
    /// When this version was loaded; a rollback to it does not reset it.
    pub loaded_at: SystemTime,
    /// Decisions it has served so far, smoke decisions excluded.
    pub decisions_served: u64,
}

/// One named plugin position: what serves now, what served before, what went wrong last.
pub struct Slot {
    pub(crate) config: ResolvedSlot,
    current: ArcSwapOption<LoadedPlugin>,
    previous: Mutex<Option<Arc<LoadedPlugin>>>,
    last_error: Mutex<Option<String>>,
    /// Settings set at run time over the configured ones (e.g. from a Configuration Service).
    setting_overrides: Mutex<Arc<BTreeMap<String, String>>>,
    /// Serialises loads of this slot; decisions and rollbacks never take it, so a slow
    /// candidate holds up nothing but the next load.
    loading: tokio::sync::Mutex<()>,
    /// Held only for the instant of a swap or a rollback, so the two never interleave.
    swapping: Mutex<()>,
    /// The slot's share of the instance pool, shared by every version it serves.
    admission: Arc<tokio::sync::Semaphore>,
    /// Where candidates come from now (set at run time by [`Catalog::set_source`]).
    source: Mutex<SlotSource>,
    /// Whether candidates must carry enough trusted signatures.
    require_signature: bool,
    /// How the serving version's bytes were obtained.
    origin: Mutex<Option<Origin>>,
    /// A source being pulled and verified, not yet in force.
    pending_source: Mutex<Option<String>>,
}

impl Slot {
    /// The version serving now. Cheap (an atomic load); the `Arc` keeps it alive for the caller.
    pub fn current(&self) -> Option<Arc<LoadedPlugin>> {
        self.current.load_full()
    }

    /// The configured settings with the run-time overrides applied.
    pub fn effective_settings(&self) -> BTreeMap<String, String> {
        let mut settings = self.config.settings.clone();
        let overrides = lock(&self.setting_overrides).clone();
        settings.extend(
            overrides
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        settings
    }

    /// True when candidates come from the plugin directory (the watcher's business).
    pub fn is_file_source(&self) -> bool {
        *lock(&self.source) == SlotSource::File
    }
}

/// All plugin slots of a host.
pub struct Catalog {
    engine: Arc<PolicyEngine>,
    dir: PathBuf,
    slots: BTreeMap<String, Slot>,
    distribution: Arc<Distribution>,
    /// Rollout hook: candidates staged beside the serving versions.
    staging: crate::rollout::Staging,
}

impl Catalog {
    /// A catalog with one (empty) slot per configured plugin and per plugin kind. Fails on
    /// an invalid `[plugins.trust]`, registry credential or slot `source`.
    pub fn new(engine: Arc<PolicyEngine>, config: &HostConfig) -> Result<Self, LoadError> {
        let distribution =
            Distribution::new(config, engine.gateway().secrets().clone()).map_err(|source| {
                LoadError::Distribution {
                    name: "*".to_owned(),
                    source: Box::new(source),
                }
            })?;
        let slots = config
            .slot_names()
            .into_iter()
            .filter_map(|name| config.slot(&name))
            .map(|resolved| {
                let settings = distribution
                    .slot(
                        resolved.source.as_deref(),
                        resolved.pull_policy,
                        resolved.require_signature,
                    )
                    .map_err(|source| LoadError::Distribution {
                        name: resolved.name.clone(),
                        source: Box::new(source),
                    })?;
                let slot = Slot {
                    source: Mutex::new(settings.source),
                    require_signature: settings.require_signature,
                    origin: Mutex::new(None),
                    pending_source: Mutex::new(None),
                    current: ArcSwapOption::empty(),
                    previous: Mutex::new(None),
                    last_error: Mutex::new(None),
                    setting_overrides: Mutex::new(Arc::default()),
                    loading: tokio::sync::Mutex::new(()),
                    swapping: Mutex::new(()),
                    admission: Arc::new(tokio::sync::Semaphore::new(
                        resolved.max_concurrent as usize,
                    )),
                    config: resolved,
                };
                Ok((slot.config.name.clone(), slot))
            })
            .collect::<Result<_, LoadError>>()?;
        Ok(Self {
            engine,
            dir: config.dir.clone(),
            slots,
            distribution: Arc::new(distribution),
            staging: crate::rollout::Staging::default(),
        })
    }

    /// The registry client, trust policy and pull cache.
    pub fn distribution(&self) -> &Arc<Distribution> {
        &self.distribution
    }

    /// The engine decisions run on.
    pub fn engine(&self) -> &Arc<PolicyEngine> {
        &self.engine
    }

    /// The plugin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The slot called `name`.
    pub fn slot(&self, name: &str) -> Option<&Slot> {
        self.slots.get(name)
    }

    /// The file a slot loads from: `<dir>/<name>.wasm`.
    pub fn file_for(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    /// Loads every enabled slot whose file exists, and every enabled slot with an OCI source.
    /// Failures are logged and kept per slot; they don't stop the others.
    pub async fn load_all(&self) -> Vec<(String, Result<ReloadOutcome, LoadError>)> {
        let mut results = Vec::new();
        for (name, slot) in &self.slots {
            if slot.config.enabled && (!slot.is_file_source() || self.file_for(name).is_file()) {
                results.push((name.clone(), self.reload(name).await));
            }
        }
        results
    }

    /// Reads `<dir>/<name>.wasm` and, if it differs from the serving version and passes
    /// validation, swaps it in. The previous version is kept for [`Catalog::rollback`].
    pub async fn reload(&self, name: &str) -> Result<ReloadOutcome, LoadError> {
        let slot = self.slots.get(name).ok_or_else(|| LoadError::UnknownSlot {
            name: name.to_owned(),
        })?;
        let _serialised = slot.loading.lock().await;
        let source = lock(&slot.source).clone();
        let result = self.load_into(slot, &source).await;
        Self::record(name, slot, &result);
        result
    }

    /// Validates `source` (`file` or `oci://…`) for slot `name` without fetching anything.
    pub fn parse_source(
        &self,
        name: &str,
        source: &str,
        pull_policy: Option<PullPolicy>,
    ) -> Result<SlotSource, LoadError> {
        if !self.slots.contains_key(name) {
            return Err(LoadError::UnknownSlot {
                name: name.to_owned(),
            });
        }
        SlotSource::parse(source, pull_policy).map_err(|source| LoadError::Distribution {
            name: name.to_owned(),
            source: Box::new(source),
        })
    }

    /// Loads slot `name` from `source` and, when the candidate passes every check, makes
    /// `source` the slot's source from then on. On failure the slot keeps its source and its
    /// serving version, and the error is kept in its status.
    pub async fn set_source(
        &self,
        name: &str,
        source: SlotSource,
    ) -> Result<ReloadOutcome, LoadError> {
        let slot = self.slots.get(name).ok_or_else(|| LoadError::UnknownSlot {
            name: name.to_owned(),
        })?;
        *lock(&slot.pending_source) = Some(source.describe());
        let _serialised = slot.loading.lock().await;
        let result = self.load_into(slot, &source).await;
        if result.is_ok() {
            *lock(&slot.source) = source;
        }
        *lock(&slot.pending_source) = None;
        Self::record(name, slot, &result);
        result
    }

    /// Enabled slots with an OCI source and nothing serving (for readiness).
    pub fn missing_sources(&self) -> Vec<String> {
        self.slots
            .values()
            .filter(|slot| slot.config.enabled && !slot.is_file_source())
            .filter(|slot| slot.current().is_none())
            .map(|slot| slot.config.name.clone())
            .collect()
    }

    /// Logs a load's outcome and keeps its error for the admin API.
    fn record(name: &str, slot: &Slot, result: &Result<ReloadOutcome, LoadError>) {
        match result {
            Ok(ReloadOutcome::Swapped { from, to }) => {
                tracing::info!(
                    plugin = name,
                    version = &*to.version,
                    sha256 = &*to.sha256,
                    previous = from.as_ref().map(|from| &*from.version),
                    "plugin swapped in"
                );
                *lock(&slot.last_error) = None;
            }
            // The file is back to what serves: the last rejected candidate is gone.
            Ok(ReloadOutcome::Unchanged(_)) => *lock(&slot.last_error) = None,
            Err(error) => {
                tracing::warn!(plugin = name, %error, "plugin candidate rejected; the serving version is unchanged");
                *lock(&slot.last_error) = Some(error.to_string());
            }
        }
    }

    async fn load_into(
        &self,
        slot: &Slot,
        source: &SlotSource,
    ) -> Result<ReloadOutcome, LoadError> {
        let name = slot.config.name.clone();
        let path = self.file_for(&name);
        // Fetched and, when required, signature-checked before anything is compiled.
        let Candidate {
            bytes,
            provenance,
            origin,
        } = self
            .distribution
            .fetch(&name, source, &path, slot.require_signature)
            .await?;
        let sha256 = sha256_hex(&bytes);
        let serving = slot.current();
        if let Some(serving) = &serving
            && *serving.identity.sha256 == sha256
            && serving.identity.provenance == provenance
        {
            *lock(&slot.origin) = Some(origin);
            return Ok(ReloadOutcome::Unchanged(serving.identity.clone()));
        }
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
        config.settings = slot.effective_settings();
        let admission = slot.admission.clone();
        let candidate = tokio::task::spawn_blocking(move || {
            prepare(
                &engine, &config, &bytes, sha256, admission, provenance, None,
            )
        })
        .await
        .map_err(|error| LoadError::Internal {
            name: name.clone(),
            message: format!("compilation task failed: {error}"),
        })??;
        let candidate = Arc::new(self.smoke_test(candidate).await?);
        // Overrides may have changed while the candidate compiled.
        candidate
            .settings
            .store(Arc::new(slot.effective_settings()));
        let to = candidate.identity.clone();
        let _swapping = lock(&slot.swapping);
        let from = slot.current.swap(Some(candidate));
        let from_identity = from.as_ref().map(|from| from.identity.clone());
        if from.is_some() {
            *lock(&slot.previous) = from;
        }
        *lock(&slot.origin) = Some(origin);
        Ok(ReloadOutcome::Swapped {
            from: from_identity,
            to,
        })
    }

    /// Asks the candidate who it is and runs one decision; either failing rejects it.
    async fn smoke_test(&self, mut candidate: LoadedPlugin) -> Result<LoadedPlugin, LoadError> {
        let name = candidate.identity.name.to_string();
        let smoke_failed = |source: PluginError| LoadError::SmokeFailed {
            name: name.clone(),
            source,
        };
        let info = candidate.info(&self.engine).await.map_err(smoke_failed)?;
        if info.version.is_empty() || info.version.len() > 64 {
            return Err(LoadError::Internal {
                name,
                message: format!("reported version {:?} is not a version", info.version),
            });
        }
        if info.name != *candidate.identity.name {
            tracing::warn!(slot = %candidate.identity.name, reported = %info.name, "plugin reports a different name than its slot");
        }
        candidate.set_reported_identity(&info.name, &info.version);
        match candidate.kind {
            PluginKind::PasswordPolicy => {
                password_policy::evaluate(
                    &self.engine,
                    &candidate,
                    &password_policy::smoke_input(),
                )
                .await
                .map_err(smoke_failed)?;
            }
            // A network plugin's smoke test stops at `info`: a load must not depend on, or
            // send traffic to, its upstream.
            PluginKind::BreachCheck | PluginKind::Captcha => {}
        }
        Ok(candidate)
    }

    /// Replaces the slot's run-time setting overrides (the configured settings stay underneath).
    /// The serving and previous versions see them from their next decision on, without a
    /// reload; versions loaded later start with them.
    pub fn set_setting_overrides(
        &self,
        name: &str,
        overrides: BTreeMap<String, String>,
    ) -> Result<(), LoadError> {
        let slot = self.slots.get(name).ok_or_else(|| LoadError::UnknownSlot {
            name: name.to_owned(),
        })?;
        *lock(&slot.setting_overrides) = Arc::new(overrides);
        let effective = Arc::new(slot.effective_settings());
        let previous = lock(&slot.previous).clone();
        for plugin in slot.current().into_iter().chain(previous) {
            plugin.settings.store(effective.clone());
        }
        Ok(())
    }

    /// Puts the previous version back in service (and the current one aside, so a second
    /// rollback undoes the first). Returns at once, even while a candidate is being validated. Holds until the next change of the plugin file or reload.
    pub async fn rollback(&self, name: &str) -> Result<PluginIdentity, RollbackError> {
        let slot = self
            .slots
            .get(name)
            .ok_or_else(|| RollbackError::UnknownSlot(name.to_owned()))?;
        // Not behind `loading`: a rollback must not wait for a candidate being validated.
        let _swapping = lock(&slot.swapping);
        let previous = lock(&slot.previous)
            .take()
            .ok_or_else(|| RollbackError::NoPreviousVersion(name.to_owned()))?;
        let restored = previous.identity.clone();
        let replaced = slot.current.swap(Some(previous));
        *lock(&slot.previous) = replaced;
        tracing::info!(
            plugin = name,
            version = &*restored.version,
            sha256 = &*restored.sha256,
            "plugin rolled back"
        );
        Ok(restored)
    }

    /// Every slot's state.
    pub fn status(&self) -> Vec<SlotStatus> {
        self.slots
            .values()
            .map(|slot| SlotStatus {
                name: slot.config.name.clone(),
                kind: slot.config.kind,
                enabled: slot.config.enabled,
                current: slot.current().map(|plugin| VersionStatus {
                    identity: plugin.identity.clone(),
                    loaded_at: plugin.loaded_at,
                    decisions_served: plugin.decisions_served(),
                }),
                previous: lock(&slot.previous)
                    .as_ref()
                    .map(|plugin| plugin.identity.clone()),
                last_error: lock(&slot.last_error).clone(),
                source: SourceStatus {
                    source: lock(&slot.source).describe(),
                    require_signature: slot.require_signature,
                    origin: lock(&slot.origin).clone(),
                    pending: lock(&slot.pending_source).clone(),
                },
            })
            .collect()
    }
}

/// Compiles and checks a candidate: a component, of this slot's world, at a compatible WIT
/// version, whose imports this host grants. CPU-heavy; runs on a blocking thread.
fn prepare(
    engine: &PolicyEngine,
    slot: &ResolvedSlot,
    bytes: &[u8],
    sha256: String,
    admission: Arc<tokio::sync::Semaphore>,
    provenance: Option<Arc<crate::source::Provenance>>,
    shared: Option<&crate::shared_artifact::TrustedArtifact>,
) -> Result<LoadedPlugin, LoadError> {
    let name = slot.name.clone();
    let component = engine
        .compile_with(bytes, &sha256, shared)
        .map_err(|error| LoadError::NotAComponent {
            name: name.clone(),
            message: format!("{error:#}"),
        })?;
    let component_type = component.component_type();
    let (kind, wit_version) = PluginKind::detect(
        component_type
            .exports(engine.engine())
            .map(|(export, _)| export),
    )
    .ok_or(LoadError::NoPolicyExport {
        name: name.clone(),
        expected: slot.kind,
    })?;
    if kind != slot.kind {
        return Err(LoadError::WrongWorld {
            name,
            expected: slot.kind,
            actual: kind,
        });
    }
    if !kind::is_compatible_wit_version(&wit_version) {
        return Err(LoadError::IncompatibleContract {
            name,
            found: wit_version,
            host: kind::WIT_VERSION,
        });
    }
    let linker = engine.linker(kind).ok_or_else(|| LoadError::Internal {
        name: name.clone(),
        message: format!("this host cannot run {kind} plugins yet"),
    })?;
    let unsatisfied = |error: wasmtime::Error| LoadError::UnsatisfiedImports {
        name: name.clone(),
        kind,
        message: format!("{error:#}"),
    };
    let instance_pre = linker.instantiate_pre(&component).map_err(unsatisfied)?;
    let pre = match kind {
        PluginKind::PasswordPolicy => {
            PreInstance::PasswordPolicy(PasswordPolicyPre::new(instance_pre).map_err(unsatisfied)?)
        }
        PluginKind::BreachCheck => {
            PreInstance::BreachCheck(BreachCheckPre::new(instance_pre).map_err(unsatisfied)?)
        }
        PluginKind::Captcha => {
            PreInstance::Captcha(CaptchaPre::new(instance_pre).map_err(unsatisfied)?)
        }
    };
    let egress = match kind {
        PluginKind::PasswordPolicy => None,
        PluginKind::BreachCheck | PluginKind::Captcha => {
            let mut egress = CallerPolicy::new(
                Caller::plugin(&name),
                &slot.egress,
                engine.gateway().defaults(),
            )
            .map_err(|error| LoadError::Internal {
                name: name.clone(),
                message: error.to_string(),
            })?;
            // Inside a decision, a call slower than 60 % of the deadline is a slow call.
            let slow = engine.limits().deadline * 6 / 10;
            for rule in &mut egress.rules {
                rule.policy.breaker.slow_call.get_or_insert(slow);
            }
            Some(Arc::new(egress))
        }
    };
    let identity = PluginIdentity {
        name: name.as_str().into(),
        version: "unknown".into(),
        sha256: sha256.into(),
        provenance,
    };
    Ok(LoadedPlugin::new(
        identity,
        kind,
        wit_version,
        Arc::new(slot.settings.clone()),
        pre,
        egress,
        (admission, slot.max_concurrent),
    ))
}
