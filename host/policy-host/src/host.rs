//! [`PolicyHost`]: the engine, the catalog and the watcher behind one handle.

use crate::{
    breach_check::{self, BreachOutcome},
    captcha::{self, AcceptedTokens, CaptchaInput},
    catalog::Catalog,
    config::HostConfig,
    decision::DecisionRecord,
    decision::{Decision, Finding, Verdict},
    engine::PolicyEngine,
    error::PluginError,
    kind::PluginKind,
    loaded::LoadedPlugin,
    password_policy::{self, PasswordInput},
    watcher::{self, PluginDirWatcher},
};
use std::sync::Arc;

// Rollout hook: decisions routed through a staged candidate.
mod staged;

/// A breach check's typed outcome and the decision made from it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BreachRecord {
    /// What the corpus said.
    pub outcome: BreachOutcome,
    /// The decision as made, for logs and metrics.
    pub record: DecisionRecord,
}

/// The policy host a service embeds.
pub struct PolicyHost {
    catalog: Arc<Catalog>,
    accepted_tokens: AcceptedTokens,
    _watcher: Option<PluginDirWatcher>,
}

impl PolicyHost {
    /// Builds the engine, loads every plugin found in `config.dir` and, when `config.watch`
    /// is set, starts watching the directory. Plugins that fail to load are reported in
    /// [`Catalog::status`]; they don't prevent the start. Must run inside a tokio runtime.
    pub async fn start(config: &HostConfig) -> anyhow::Result<Self> {
        let engine = PolicyEngine::new(
            config.limits.clone(),
            config.cache_dir.clone(),
            config.egress.clone(),
        )
        .map_err(|error| anyhow::anyhow!("cannot build the wasm engine: {error:#}"))?;
        config.check_timeouts_fit().map_err(anyhow::Error::msg)?;
        let shares: u64 = config
            .slot_names()
            .iter()
            .filter_map(|name| config.slot(name))
            .filter(|slot| slot.enabled)
            .map(|slot| u64::from(slot.max_concurrent))
            .sum();
        if shares > u64::from(config.limits.max_concurrent_instances) {
            anyhow::bail!(
                "the slots' max-concurrent-decisions add up to {shares}, more than the pool's \
                 max-concurrent-instances ({}): one slot could starve the others",
                config.limits.max_concurrent_instances
            );
        }
        let catalog = Arc::new(Catalog::new(Arc::new(engine), config)?);
        std::fs::create_dir_all(&config.dir).map_err(|error| {
            anyhow::anyhow!(
                "cannot create plugin directory {}: {error}",
                config.dir.display()
            )
        })?;
        for (name, result) in catalog.load_all().await {
            if let Err(error) = result {
                tracing::error!(plugin = name, %error, "plugin failed to load at start");
            }
        }
        let watcher = if config.watch {
            Some(watcher::watch(catalog.clone()).map_err(|error| {
                anyhow::anyhow!("cannot watch {}: {error}", config.dir.display())
            })?)
        } else {
            None
        };
        // Accepted CAPTCHA tokens are remembered for the longest replay window configured.
        let replay_window = config
            .slot_names()
            .iter()
            .filter_map(|name| config.slot(name))
            .filter(|slot| slot.kind == PluginKind::Captcha)
            .map(|slot| slot.replay_window)
            .max()
            .unwrap_or(std::time::Duration::from_mins(10));
        Ok(Self {
            catalog,
            accepted_tokens: AcceptedTokens::new(replay_window),
            _watcher: watcher,
        })
    }

    /// The catalog: status, reload, rollback.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Judges a new password with the plugin in slot `name`; when the plugin fails, the slot's
    /// fail policy decides, and the record says so.
    pub async fn evaluate_password(&self, name: &str, input: &PasswordInput) -> DecisionRecord {
        match self.try_evaluate_password(name, input).await {
            Ok(record) => record,
            Err(error) => self.fail(name, PluginKind::PasswordPolicy, error),
        }
    }

    /// Like [`PolicyHost::evaluate_password`] but returns the plugin's error instead of
    /// applying the fail policy.
    pub async fn try_evaluate_password(
        &self,
        name: &str,
        input: &PasswordInput,
    ) -> Result<DecisionRecord, PluginError> {
        let plugin = self.serving(name, PluginKind::PasswordPolicy)?;
        let _instance = plugin.admit(self.catalog.engine()).await?;
        let decision = password_policy::evaluate(self.catalog.engine(), &plugin, input).await?;
        plugin.count_decision();
        Ok(DecisionRecord {
            decision,
            plugin: Some(plugin.identity.clone()),
            fail_policy_applied: None,
        })
    }

    /// Checks `password` against the breach corpus with the plugin in slot `name`. An
    /// `unknown` outcome, or a plugin failure, goes through the slot's fail policy (default:
    /// allow, flagged with `breach-check-unavailable`); the record says which.
    pub async fn check_breach(&self, name: &str, password: &str) -> BreachRecord {
        let plugin = self.serving(name, PluginKind::BreachCheck);
        check_breach_on(&self.catalog, name, plugin, password).await
    }

    /// The record of a breach-check `outcome` that `plugin` (serving slot `name`) reached: a
    /// known outcome decides, an `unknown` one goes through the slot's fail policy. Public for
    /// the service's native benchmark mode, which reaches outcomes without the plugin.
    pub fn breach_record(
        &self,
        name: &str,
        plugin: &LoadedPlugin,
        outcome: BreachOutcome,
    ) -> BreachRecord {
        breach_record_in(&self.catalog, name, plugin, outcome)
    }

    /// Verifies a CAPTCHA token with the plugin in slot `name`. A token this host accepted
    /// before is refused (`captcha-expired-or-reused`) without calling the plugin or provider.
    /// When the provider can't be reached (`captcha-unavailable`) or the plugin fails, the
    /// slot's fail policy for this flow decides (default: closed).
    pub async fn verify_captcha(&self, name: &str, input: &CaptchaInput) -> DecisionRecord {
        let plugin = self.serving(name, PluginKind::Captcha);
        self.verify_captcha_with(name, plugin, input).await
    }

    /// [`PolicyHost::verify_captcha`] with `plugin` (the serving version, or a canary).
    async fn verify_captcha_with(
        &self,
        name: &str,
        plugin: Result<Arc<LoadedPlugin>, PluginError>,
        input: &CaptchaInput,
    ) -> DecisionRecord {
        let flow = input.action.as_str();
        let plugin = match plugin {
            Ok(plugin) => plugin,
            Err(error) => return self.fail_for_flow(name, flow, error),
        };
        let identity = Some(plugin.identity.clone());
        if !input.token.trim().is_empty() && self.accepted_tokens.is_replay(name, &input.token) {
            tracing::info!(
                plugin = name,
                flow,
                "captcha token replayed; refused without a provider call"
            );
            let decision = Decision {
                verdict: Verdict::Deny,
                findings: vec![Finding::new(
                    "captcha-expired-or-reused",
                    "The CAPTCHA was already used; complete it again.",
                )],
                attributes: Vec::new(),
            };
            return DecisionRecord {
                decision,
                plugin: identity,
                fail_policy_applied: None,
            };
        }
        let key = input
            .idempotency_key
            .clone()
            .unwrap_or_else(captcha::new_idempotency_key);
        let _instance = match plugin.admit(self.catalog.engine()).await {
            Ok(permit) => permit,
            Err(error) => {
                let mut record = self.fail_for_flow(name, flow, error);
                record.plugin = identity;
                return record;
            }
        };
        match captcha::verify(self.catalog.engine(), &plugin, input, &key).await {
            Ok(decision) if decision.codes().contains(&"captcha-unavailable") => {
                plugin.count_decision();
                let error = PluginError::Upstream {
                    name: name.to_owned(),
                    reason: "the CAPTCHA provider is unavailable".to_owned(),
                };
                let mut record = self.fail_for_flow(name, flow, error);
                record.plugin = identity;
                record
            }
            Ok(decision) => {
                plugin.count_decision();
                if decision.verdict == Verdict::Allow {
                    self.accepted_tokens.accept(name, &input.token);
                }
                DecisionRecord {
                    decision,
                    plugin: identity,
                    fail_policy_applied: None,
                }
            }
            Err(error) => {
                let mut record = self.fail_for_flow(name, flow, error);
                record.plugin = identity;
                record
            }
        }
    }

    /// The fail policy of a captcha slot for one flow.
    fn fail_for_flow(&self, name: &str, flow: &str, error: PluginError) -> DecisionRecord {
        let policy = self
            .catalog
            .slot(name)
            .and_then(|slot| slot.config.fail_policy_by_flow.get(flow).copied());
        let mut record = self.fail(name, PluginKind::Captcha, error.clone());
        if let Some(policy) = policy {
            record.decision = policy.decide(PluginKind::Captcha, &error);
        }
        record
    }

    /// The version serving in slot `name`, checked to be of `kind`.
    fn serving(&self, name: &str, kind: PluginKind) -> Result<Arc<LoadedPlugin>, PluginError> {
        let plugin = self
            .catalog
            .slot(name)
            .and_then(super::catalog::Slot::current)
            .ok_or_else(|| PluginError::NotLoaded {
                name: name.to_owned(),
            })?;
        if plugin.kind != kind {
            return Err(PluginError::WrongKind {
                name: name.to_owned(),
                expected: kind,
                actual: plugin.kind,
            });
        }
        Ok(plugin)
    }

    fn fail(&self, name: &str, kind: PluginKind, error: PluginError) -> DecisionRecord {
        fail_in(&self.catalog, name, kind, error)
    }
}

/// Runs breach-check `plugin` (the serving version of slot `name`, a shadow or a canary; an
/// error when there is none) on `password`, through the slot's fail policy when needed.
pub(crate) async fn check_breach_on(
    catalog: &Catalog,
    name: &str,
    plugin: Result<Arc<LoadedPlugin>, PluginError>,
    password: &str,
) -> BreachRecord {
    let checked = match plugin {
        Ok(plugin) => {
            let outcome = async {
                let _instance = plugin.admit(catalog.engine()).await?;
                let outcome = breach_check::check(catalog.engine(), &plugin, password).await?;
                plugin.count_decision();
                Ok(outcome)
            };
            outcome
                .await
                .map_err(|error| (error, Some(plugin.clone())))
                .map(|outcome| (outcome, plugin))
        }
        Err(error) => Err((error, None)),
    };
    match checked {
        Ok((outcome, plugin)) => breach_record_in(catalog, name, &plugin, outcome),
        Err((error, plugin)) => {
            let outcome = BreachOutcome::Unknown {
                reason: error.code().to_owned(),
            };
            let mut record = fail_in(catalog, name, PluginKind::BreachCheck, error);
            if let Some(plugin) = plugin {
                record.plugin = Some(plugin.identity.clone());
            }
            BreachRecord { outcome, record }
        }
    }
}

/// See [`PolicyHost::breach_record`].
fn breach_record_in(
    catalog: &Catalog,
    name: &str,
    plugin: &LoadedPlugin,
    outcome: BreachOutcome,
) -> BreachRecord {
    if let Some(decision) = breach_check::decide(&outcome) {
        BreachRecord {
            record: DecisionRecord {
                decision,
                plugin: Some(plugin.identity.clone()),
                fail_policy_applied: None,
            },
            outcome,
        }
    } else {
        let reason = if let BreachOutcome::Unknown { reason } = &outcome {
            reason.clone()
        } else {
            String::new()
        };
        let error = PluginError::Upstream {
            name: name.to_owned(),
            reason,
        };
        let mut record = fail_in(catalog, name, PluginKind::BreachCheck, error);
        record.plugin = Some(plugin.identity.clone());
        BreachRecord { outcome, record }
    }
}

/// The decision of slot `name`'s fail policy for `error`, with the serving identity.
fn fail_in(catalog: &Catalog, name: &str, kind: PluginKind, error: PluginError) -> DecisionRecord {
    let slot = catalog.slot(name);
    let policy = slot.map_or_else(
        || crate::FailPolicy::default_for(kind),
        |slot| slot.config.fail_policy,
    );
    crate::egress::log_throttle::warn_throttled(
        &format!("{name} {}", error.code()),
        |suppressed| {
            tracing::warn!(plugin = name, %error, ?policy, suppressed, "plugin failed; applying the fail policy");
        },
    );
    DecisionRecord {
        decision: policy.decide(kind, &error),
        plugin: slot
            .and_then(super::catalog::Slot::current)
            .map(|plugin| plugin.identity.clone()),
        fail_policy_applied: Some(error),
    }
}
