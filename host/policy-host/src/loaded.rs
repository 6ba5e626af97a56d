//! A plugin version that passed validation and can serve decisions.

use crate::{
    bindings::{
        breach_check::BreachCheckPre, captcha::CaptchaPre, password_policy::PasswordPolicyPre,
    },
    decision::PluginIdentity,
    egress::CallerPolicy,
    engine::PolicyEngine,
    error::PluginError,
    kind::PluginKind,
    store_state::{MemoryCapExceeded, PluginState},
    wasi_http::hooks::EgressHooks,
};
use arc_swap::ArcSwap;
use std::{
    collections::BTreeMap,
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::SystemTime,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::{Store, Trap};

/// Longest text a plugin's failure (trap message, captured stderr) may put in an error.
const MAX_ERROR_TEXT_BYTES: usize = 1024;

/// The pre-linked, ready-to-instantiate component, typed by kind.
pub(crate) enum PreInstance {
    PasswordPolicy(PasswordPolicyPre<PluginState>),
    BreachCheck(BreachCheckPre<PluginState>),
    Captcha(CaptchaPre<PluginState>),
}

/// One loaded plugin version. Shared (`Arc`) by the catalog and every decision in flight, so a
/// swap never pulls a version out from under a running decision.
pub struct LoadedPlugin {
    /// Name, version and content hash, recorded with every decision.
    pub identity: PluginIdentity,
    /// The world it implements.
    pub kind: PluginKind,
    /// The WIT package version it was built against.
    pub wit_version: String,
    /// When this version was loaded.
    pub loaded_at: SystemTime,
    /// The settings decisions see: the slot's configured settings with any overrides applied
    /// ([`crate::catalog::Catalog::set_setting_overrides`]); swapped without a reload.
    pub(crate) settings: ArcSwap<BTreeMap<String, String>>,
    pub(crate) pre: PreInstance,
    /// Where the plugin may send requests; `None` for kinds without network access.
    pub(crate) egress: Option<Arc<CallerPolicy>>,
    /// `slot: name version` as the plugin reports them, for its log lines.
    label: Arc<str>,
    decisions: AtomicU64,
    /// The slot's share of the instance pool, shared by every version of the slot.
    admission: Arc<Semaphore>,
    /// The size of that share.
    admission_limit: u32,
}

impl LoadedPlugin {
    pub(crate) fn new(
        identity: PluginIdentity,
        kind: PluginKind,
        wit_version: String,
        settings: Arc<BTreeMap<String, String>>,
        pre: PreInstance,
        egress: Option<Arc<CallerPolicy>>,
        admission: (Arc<Semaphore>, u32),
    ) -> Self {
        let label = format!("{}: (loading)", identity.name).into();
        let (admission, admission_limit) = admission;
        Self {
            identity,
            kind,
            wit_version,
            loaded_at: SystemTime::now(),
            settings: ArcSwap::new(settings),
            pre,
            egress,
            label,
            decisions: AtomicU64::new(0),
            admission,
            admission_limit,
        }
    }

    /// Records who the plugin says it is (from `info()`), for decision records and log lines.
    pub(crate) fn set_reported_identity(&mut self, name: &str, version: &str) {
        let printable =
            |text: &str| -> String { text.chars().filter(|c| !c.is_control()).take(64).collect() };
        self.identity.version = printable(version).into();
        self.label = format!(
            "{}: {} {}",
            self.identity.name,
            printable(name),
            self.identity.version
        )
        .into();
    }

    /// Takes one instance of the slot's share, waiting at most the queue timeout: a slot whose
    /// decisions all hang can only exhaust its own share, never the other slots'.
    pub(crate) async fn admit(
        &self,
        engine: &PolicyEngine,
    ) -> Result<OwnedSemaphorePermit, PluginError> {
        let slot = &*self.identity.name;
        let permit = if let Ok(permit) = self.admission.clone().try_acquire_owned() {
            permit
        } else {
            let wait = engine.limits().queue_timeout.min(engine.limits().deadline);
            if let Ok(Ok(permit)) =
                tokio::time::timeout(wait, self.admission.clone().acquire_owned()).await
            {
                permit
            } else {
                metrics::counter!("plugin_admission_rejections_total", "slot" => slot.to_owned())
                    .increment(1);
                return Err(PluginError::Overloaded {
                    name: slot.to_owned(),
                    limit: self.admission_limit,
                    waited: wait,
                });
            }
        };
        let in_flight = self.admission_limit as usize - self.admission.available_permits();
        metrics::gauge!("plugin_instances_in_flight", "slot" => slot.to_owned())
            .set(in_flight as f64);
        Ok(permit)
    }

    /// Runs one guest call (instantiation included) under the host's timer. Epoch interruption
    /// stops a guest that computes; this timer stops one that waits (a `wasi:clocks` sleep, a
    /// pollable, a stream, an upstream), so no call of any kind outlives the deadline. The
    /// inner result is the guest's own; the outer error is the deadline.
    pub(crate) async fn within_deadline<T>(
        &self,
        engine: &PolicyEngine,
        call: impl Future<Output = wasmtime::Result<T>>,
    ) -> Result<wasmtime::Result<T>, PluginError> {
        tokio::time::timeout(engine.limits().deadline, call)
            .await
            .map_err(|_| self.deadline_exceeded(engine))
    }

    /// Decisions served by this version so far (smoke decisions excluded).
    pub fn decisions_served(&self) -> u64 {
        self.decisions.load(Ordering::Relaxed)
    }

    pub(crate) fn count_decision(&self) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
    }

    /// A fresh store for one decision: memory cap and deadline armed.
    pub(crate) fn new_store(&self, engine: &PolicyEngine) -> Store<PluginState> {
        let limits = engine.limits();
        let deadline = std::time::Instant::now() + limits.deadline;
        let hooks = match &self.egress {
            Some(egress) => EgressHooks::new(engine.gateway().clone(), egress.clone(), deadline),
            None => EgressHooks::deny_all(deadline),
        };
        let state = PluginState::new(
            self.settings.load_full(),
            self.label.clone(),
            limits.memory_bytes,
            hooks,
            engine.gateway().redactor(),
        );
        let mut store = Store::new(engine.engine(), state);
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(limits.deadline_ticks());
        store.epoch_deadline_trap();
        store
    }

    /// Turns a wasmtime error from this plugin's store into a typed [`PluginError`].
    pub(crate) fn classify(
        &self,
        engine: &PolicyEngine,
        store: &Store<PluginState>,
        error: wasmtime::Error,
    ) -> PluginError {
        let name = self.identity.name.to_string();
        let version = self.identity.version.to_string();
        if store.data().memory.hit || error.is::<MemoryCapExceeded>() {
            return PluginError::MemoryLimit {
                name,
                version,
                limit_bytes: store.data().memory.limit_bytes,
            };
        }
        // A trap message and the captured stderr are the plugin's own text: scrubbed of every
        // secret and capped before they go anywhere.
        let redactor = engine.gateway().redactor();
        match error.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => self.deadline_exceeded(engine),
            Some(trap) => {
                let stderr = store.data().captured_stderr();
                let message = if stderr.is_empty() {
                    trap.to_string()
                } else {
                    format!("{trap}: {stderr}")
                };
                PluginError::Trap {
                    name,
                    version,
                    message: cap_text(redactor.redact(&message), MAX_ERROR_TEXT_BYTES),
                }
            }
            None => PluginError::Instantiation {
                name,
                version,
                message: cap_text(redactor.redact(&format!("{error:#}")), MAX_ERROR_TEXT_BYTES),
            },
        }
    }
}

impl LoadedPlugin {
    /// Creates a fresh instance and drops it without calling anything: the fixed cost every
    /// decision pays. Used by the benchmark; also a cheap liveness probe.
    pub async fn instantiate_only(&self, engine: &PolicyEngine) -> Result<(), PluginError> {
        let mut store = self.new_store(engine);
        let result = match &self.pre {
            PreInstance::PasswordPolicy(pre) => pre.instantiate_async(&mut store).await.map(drop),
            PreInstance::BreachCheck(pre) => pre.instantiate_async(&mut store).await.map(drop),
            PreInstance::Captcha(pre) => pre.instantiate_async(&mut store).await.map(drop),
        };
        result.map_err(|error| self.classify(engine, &store, error))
    }
}

impl LoadedPlugin {
    /// Where this plugin may send requests (`None` for kinds without network access).
    pub fn egress(&self) -> Option<&Arc<CallerPolicy>> {
        self.egress.as_ref()
    }

    /// The error for a decision of this plugin that ran past its deadline: stopped by the epoch
    /// while computing, or by the caller's timer while waiting on the host (an upstream).
    pub(crate) fn deadline_exceeded(&self, engine: &PolicyEngine) -> PluginError {
        PluginError::DeadlineExceeded {
            name: self.identity.name.to_string(),
            version: self.identity.version.to_string(),
            deadline: engine.limits().deadline,
        }
    }

    /// The error for calling this plugin as a kind it is not.
    pub(crate) fn wrong_kind(&self, expected: PluginKind) -> PluginError {
        PluginError::WrongKind {
            name: self.identity.name.to_string(),
            expected,
            actual: self.kind,
        }
    }

    /// Asks the plugin who it is, in a fresh instance (every kind exports `info`), within the
    /// decision deadline.
    pub(crate) async fn info(
        &self,
        engine: &PolicyEngine,
    ) -> Result<crate::bindings::types::PluginInfo, PluginError> {
        let mut store = self.new_store(engine);
        let call = async {
            match &self.pre {
                PreInstance::PasswordPolicy(pre) => match pre.instantiate_async(&mut store).await {
                    Ok(instance) => {
                        instance
                            .user_service_policy_password_rules()
                            .call_info(&mut store)
                            .await
                    }
                    Err(error) => Err(error),
                },
                PreInstance::BreachCheck(pre) => match pre.instantiate_async(&mut store).await {
                    Ok(instance) => {
                        instance
                            .user_service_policy_breach_lookup()
                            .call_info(&mut store)
                            .await
                    }
                    Err(error) => Err(error),
                },
                PreInstance::Captcha(pre) => match pre.instantiate_async(&mut store).await {
                    Ok(instance) => {
                        instance
                            .user_service_policy_captcha_verifier()
                            .call_info(&mut store)
                            .await
                    }
                    Err(error) => Err(error),
                },
            }
        };
        let answer = self.within_deadline(engine, call).await?;
        answer.map_err(|error| self.classify(engine, &store, error))
    }
}

/// `text` cut to at most `limit` bytes (on a character boundary), marked when cut.
pub(crate) fn cap_text(mut text: String, limit: usize) -> String {
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    text
}
