//! Staged candidates: a second version of a slot that runs beside the serving one, either in
//! shadow (after the serving answer, off the response path; its answer is only compared) or as
//! a canary for a stable share of accounts. Which candidate is staged is decided elsewhere (the
//! service's desired state); this module holds it, routes decisions and keeps the diff.

pub mod bucket;
pub mod decision_log;
pub mod diff;

use crate::loaded::LoadedPlugin;
use arc_swap::ArcSwap;
use decision_log::DecisionLog;
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};
use tokio::sync::{Notify, Semaphore};

/// How a candidate is staged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StageKind {
    /// Runs after the serving version, off the response path; its answer is only compared.
    Shadow,
    /// Answers for a stable share of accounts instead of the serving version.
    Canary,
}

/// When a canary is aborted without anyone asking.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AbortRule {
    /// How much higher (absolute, 0.05 = five points) the candidate's error rate may be than
    /// the serving version's before it is aborted.
    #[serde(rename = "error-margin")]
    pub error_margin: f64,
    /// Candidate decisions needed before the rule is applied.
    #[serde(rename = "min-decisions")]
    pub min_decisions: u64,
}

impl Default for AbortRule {
    fn default() -> Self {
        Self {
            error_margin: 0.05,
            min_decisions: 20,
        }
    }
}

/// Everything about a staged candidate except its code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StagePlan {
    /// Shadow or canary.
    pub stage: StageKind,
    /// Canary share of accounts, 0–100.
    pub percent: f64,
    /// Mixed into the canary bucket: a new salt reshuffles who is in the share.
    pub salt: String,
    /// Shadow: share of decisions also run on the candidate, 0–100.
    pub sample_percent: f64,
    /// Shadow: most candidate evaluations running at once; more are skipped, never queued.
    pub max_concurrent: u32,
    /// When the candidate is aborted automatically.
    pub abort: AbortRule,
    /// The desired-state revision this plan belongs to (diffs of two revisions never mix).
    pub revision: i64,
}

/// A candidate staged in a slot.
pub struct Staged {
    /// How it is staged.
    pub plan: StagePlan,
    /// The candidate version, loaded and ready to evaluate.
    pub plugin: Arc<LoadedPlugin>,
    pub(crate) shadow_permits: Arc<Semaphore>,
    /// Its decisions compared with the serving version's, since it was staged.
    pub diff: diff::Diff,
}

impl Staged {
    /// Whether `account` gets the candidate (canary only; shadow never answers).
    pub fn routes_to_candidate(&self, slot: &str, account: Option<&str>) -> bool {
        self.plan.stage == StageKind::Canary
            && account.is_some_and(|account| {
                bucket::in_canary(slot, &self.plan.salt, account, self.plan.percent)
            })
    }

    /// Why the candidate should be aborted now, if it should: its error (fail-policy) rate is
    /// above the serving version's by more than the margin, over enough decisions.
    pub fn abort_reason(&self) -> Option<String> {
        let report = self.diff.report();
        let rule = self.plan.abort;
        if report.candidate.decisions < rule.min_decisions {
            return None;
        }
        let (candidate, serving) = (report.candidate.error_rate(), report.serving.error_rate());
        (candidate > serving + rule.error_margin).then(|| {
            format!(
                "candidate error rate {:.1} % over {} decisions exceeds the serving version's {:.1} % by more than {:.1} points",
                candidate * 100.0,
                report.candidate.decisions,
                serving * 100.0,
                rule.error_margin * 100.0
            )
        })
    }
}

/// A candidate this replica took out of service on its own, for the service to record.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoAbort {
    /// The slot the candidate was staged in.
    pub slot: String,
    /// The desired-state revision of the aborted plan.
    pub revision: i64,
    /// Why, in words (see [`Staged::abort_reason`]).
    pub reason: String,
}

/// The staged candidates of every slot, the decision log, and the automatic aborts not yet
/// recorded.
#[derive(Default)]
pub struct Staging {
    slots: ArcSwap<BTreeMap<String, Arc<Staged>>>,
    log: ArcSwap<DecisionLog>,
    aborts: Mutex<Vec<AutoAbort>>,
    /// Woken on an automatic abort, so the service records it at once.
    pub abort_signal: Notify,
}

impl Staging {
    /// The candidate staged in `slot`, if any.
    pub fn get(&self, slot: &str) -> Option<Arc<Staged>> {
        self.slots.load().get(slot).cloned()
    }

    /// Stages `plugin` in `slot` with `plan`, replacing any candidate there (a new diff).
    pub fn stage(&self, slot: &str, plan: StagePlan, plugin: Arc<LoadedPlugin>) -> Arc<Staged> {
        let staged = Arc::new(Staged {
            shadow_permits: Arc::new(Semaphore::new(plan.max_concurrent.max(1) as usize)),
            plan,
            plugin,
            diff: diff::Diff::default(),
        });
        self.slots.rcu(|slots| {
            let mut slots = BTreeMap::clone(slots);
            slots.insert(slot.to_owned(), staged.clone());
            slots
        });
        staged
    }

    /// Takes the candidate out of `slot`; decisions from now on go to the serving version.
    pub fn clear(&self, slot: &str) -> Option<Arc<Staged>> {
        let removed = self.get(slot);
        if removed.is_some() {
            self.slots.rcu(|slots| {
                let mut slots = BTreeMap::clone(slots);
                slots.remove(slot);
                slots
            });
        }
        removed
    }

    /// Every staged candidate.
    pub fn all(&self) -> Vec<(String, Arc<Staged>)> {
        self.slots
            .load()
            .iter()
            .map(|(slot, staged)| (slot.clone(), staged.clone()))
            .collect()
    }

    /// Replaces the decision log.
    pub fn set_decision_log(&self, log: DecisionLog) {
        self.log.store(Arc::new(log));
    }

    /// The decision log in force.
    pub fn decision_log(&self) -> Arc<DecisionLog> {
        self.log.load_full()
    }

    /// Takes `staged` out of `slot` (if it is still the one staged) and keeps the abort for
    /// [`Staging::take_aborts`]. Returns false when another decision already did.
    pub fn auto_abort(&self, slot: &str, staged: &Arc<Staged>, reason: String) -> bool {
        let mut removed = false;
        self.slots.rcu(|slots| {
            let mut slots = BTreeMap::clone(slots);
            removed = slots
                .get(slot)
                .is_some_and(|current| Arc::ptr_eq(current, staged));
            if removed {
                slots.remove(slot);
            }
            slots
        });
        if removed {
            tracing::warn!(plugin = slot, revision = staged.plan.revision, %reason, "canary aborted automatically");
            metrics::counter!("plugin_rollout_auto_aborts_total", "slot" => slot.to_owned())
                .increment(1);
            self.aborts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(AutoAbort {
                    slot: slot.to_owned(),
                    revision: staged.plan.revision,
                    reason,
                });
            self.abort_signal.notify_one();
        }
        removed
    }

    /// The automatic aborts since the last call.
    pub fn take_aborts(&self) -> Vec<AutoAbort> {
        std::mem::take(
            &mut *self
                .aborts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}
