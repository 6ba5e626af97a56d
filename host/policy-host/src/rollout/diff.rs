//! The decision diff of a staged candidate against the serving version, built from decision
//! lines: how verdicts moved, error and latency per version, a capped sample of differences.

use super::decision_log::DecisionLine;
use crate::decision::Verdict;
use serde::{Deserialize, Serialize};
use std::sync::{
    Mutex,
    atomic::{AtomicU64, Ordering},
};

/// Most differing decisions kept as samples.
pub const MAX_SAMPLES: usize = 20;

/// How a candidate's answer compares with the serving answer to the same input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Change {
    /// Same verdict, same codes.
    Unchanged,
    /// Allow became deny or challenge.
    Stricter,
    /// Deny or challenge became allow.
    Looser,
    /// Same verdict (or deny ↔ challenge) with other codes, or another breach outcome (count).
    Reclassified,
}

/// Classifies the candidate's line against the serving one.
pub fn classify(serving: &DecisionLine, candidate: &DecisionLine) -> Change {
    match (serving.verdict, candidate.verdict) {
        (Verdict::Allow, Verdict::Deny | Verdict::Challenge) => Change::Stricter,
        (Verdict::Deny | Verdict::Challenge, Verdict::Allow) => Change::Looser,
        (before, after)
            if before == after
                && serving.codes == candidate.codes
                && serving.outcome == candidate.outcome =>
        {
            Change::Unchanged
        }
        _ => Change::Reclassified,
    }
}

/// Counts of one version's decisions.
#[derive(Debug, Default)]
struct VersionCounters {
    decisions: AtomicU64,
    errors: AtomicU64,
    denied: AtomicU64,
    latency_us_total: AtomicU64,
    latency_us_max: AtomicU64,
}

impl VersionCounters {
    fn observe(&self, line: &DecisionLine) {
        self.decisions.fetch_add(1, Ordering::Relaxed);
        if line.fail_policy.is_some() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        if line.verdict != Verdict::Allow {
            self.denied.fetch_add(1, Ordering::Relaxed);
        }
        self.latency_us_total
            .fetch_add(line.latency_us, Ordering::Relaxed);
        self.latency_us_max
            .fetch_max(line.latency_us, Ordering::Relaxed);
    }

    fn report(&self) -> VersionReport {
        let decisions = self.decisions.load(Ordering::Relaxed);
        VersionReport {
            decisions,
            errors: self.errors.load(Ordering::Relaxed),
            denied: self.denied.load(Ordering::Relaxed),
            latency_us_total: self.latency_us_total.load(Ordering::Relaxed),
            latency_us_max: self.latency_us_max.load(Ordering::Relaxed),
        }
    }
}

/// One version's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct VersionReport {
    /// Decisions made, fail-policy ones included.
    pub decisions: u64,
    /// Decisions the fail policy made because the plugin failed.
    pub errors: u64,
    /// Deny or challenge verdicts.
    pub denied: u64,
    /// Sum of the decisions' latencies, in microseconds (divide by `decisions` for the mean).
    pub latency_us_total: u64,
    /// Slowest decision, in microseconds.
    pub latency_us_max: u64,
}

impl VersionReport {
    /// Errors per decision (0 with no decisions).
    pub fn error_rate(&self) -> f64 {
        if self.decisions == 0 {
            0.0
        } else {
            self.errors as f64 / self.decisions as f64
        }
    }

    fn merge(&mut self, other: &Self) {
        self.decisions += other.decisions;
        self.errors += other.errors;
        self.denied += other.denied;
        self.latency_us_total += other.latency_us_total;
        self.latency_us_max = self.latency_us_max.max(other.latency_us_max);
    }
}

/// What one side of a differing decision said: codes and attributes, no input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleSide {
    /// Allow, deny or challenge.
    pub verdict: Verdict,
    /// The findings' codes.
    pub codes: Vec<String>,
    /// The decision's attributes (measurements, never the input).
    pub attributes: serde_json::Value,
}

impl From<&DecisionLine> for SampleSide {
    fn from(line: &DecisionLine) -> Self {
        Self {
            verdict: line.verdict,
            codes: line.codes.clone(),
            attributes: line.attributes.clone(),
        }
    }
}

/// One differing decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffSample {
    /// How the candidate's answer differs.
    pub change: Change,
    /// A keyed hash of the account ([`super::bucket::account_tag`]), when one was known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// What the serving version said.
    pub serving: SampleSide,
    /// What the candidate said.
    pub candidate: SampleSide,
}

/// A diff's figures, serialisable so replicas' reports can be added up.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DiffReport {
    /// The serving version's figures (canary: the accounts outside the share).
    pub serving: VersionReport,
    /// The candidate's figures (canary: the accounts inside the share).
    pub candidate: VersionReport,
    /// Compared decisions with the same verdict and codes.
    pub unchanged: u64,
    /// Compared decisions where allow became deny or challenge.
    pub stricter: u64,
    /// Compared decisions where deny or challenge became allow.
    pub looser: u64,
    /// Compared decisions with the same verdict (or deny ↔ challenge) and other codes.
    pub reclassified: u64,
    /// Shadow evaluations not run: not sampled, or the shadow concurrency limit was reached.
    pub shadow_skipped: u64,
    /// Differing decisions, at most [`MAX_SAMPLES`].
    pub samples: Vec<DiffSample>,
}

impl DiffReport {
    /// Adds `other` (another replica's report of the same rollout) to this one.
    pub fn merge(&mut self, other: &Self) {
        self.serving.merge(&other.serving);
        self.candidate.merge(&other.candidate);
        self.unchanged += other.unchanged;
        self.stricter += other.stricter;
        self.looser += other.looser;
        self.reclassified += other.reclassified;
        self.shadow_skipped += other.shadow_skipped;
        let room = MAX_SAMPLES.saturating_sub(self.samples.len());
        self.samples
            .extend(other.samples.iter().take(room).cloned());
    }
}

/// The live diff of one staged candidate.
#[derive(Debug, Default)]
pub struct Diff {
    serving: VersionCounters,
    candidate: VersionCounters,
    unchanged: AtomicU64,
    stricter: AtomicU64,
    looser: AtomicU64,
    reclassified: AtomicU64,
    shadow_skipped: AtomicU64,
    samples: Mutex<Vec<DiffSample>>,
}

impl Diff {
    /// Counts a decision of the serving version (canary: the accounts outside the share).
    pub fn observe_serving(&self, line: &DecisionLine) {
        self.serving.observe(line);
    }

    /// Counts a decision of the candidate (canary: the accounts inside the share).
    pub fn observe_candidate(&self, line: &DecisionLine) {
        self.candidate.observe(line);
    }

    /// Counts a shadow evaluation that did not run.
    pub fn skip_shadow(&self) {
        self.shadow_skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Compares both versions' answers to one input (shadow), counting the candidate's side.
    /// The serving side was counted when it answered.
    pub fn compare(
        &self,
        serving: &DecisionLine,
        candidate: &DecisionLine,
        account: Option<String>,
    ) -> Change {
        self.candidate.observe(candidate);
        let change = classify(serving, candidate);
        let counter = match change {
            Change::Unchanged => &self.unchanged,
            Change::Stricter => &self.stricter,
            Change::Looser => &self.looser,
            Change::Reclassified => &self.reclassified,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("plugin_rollout_diff_total", "slot" => serving.slot.clone(), "change" => change_label(change)).increment(1);
        if change != Change::Unchanged {
            let mut samples = self
                .samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if samples.len() < MAX_SAMPLES {
                samples.push(DiffSample {
                    change,
                    account,
                    serving: serving.into(),
                    candidate: candidate.into(),
                });
            }
        }
        change
    }

    /// The figures so far.
    pub fn report(&self) -> DiffReport {
        DiffReport {
            serving: self.serving.report(),
            candidate: self.candidate.report(),
            unchanged: self.unchanged.load(Ordering::Relaxed),
            stricter: self.stricter.load(Ordering::Relaxed),
            looser: self.looser.load(Ordering::Relaxed),
            reclassified: self.reclassified.load(Ordering::Relaxed),
            shadow_skipped: self.shadow_skipped.load(Ordering::Relaxed),
            samples: self
                .samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }
}

fn change_label(change: Change) -> &'static str {
    match change {
        Change::Unchanged => "unchanged",
        Change::Stricter => "stricter",
        Change::Looser => "looser",
        Change::Reclassified => "reclassified",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        BreachOutcome,
        decision::{Decision, DecisionRecord, Finding},
    };
    use std::time::Duration;

    fn line(verdict: Verdict, codes: &[&str], outcome: Option<BreachOutcome>) -> DecisionLine {
        let record = DecisionRecord {
            decision: Decision {
                verdict,
                findings: codes.iter().map(|code| Finding::new(*code, "")).collect(),
                attributes: Vec::new(),
            },
            plugin: None,
            fail_policy_applied: None,
        };
        let line = DecisionLine::new(
            "breach-check",
            super::super::decision_log::Role::Serving,
            &record,
            Duration::ZERO,
        );
        match outcome {
            Some(outcome) => line.with_outcome(&outcome),
            None => line,
        }
    }

    #[test]
    fn another_breach_count_with_the_same_verdict_is_a_reclassification() {
        let breached = |count| Some(BreachOutcome::Breached { count });
        let serving = line(Verdict::Deny, &["breached"], breached(42));
        assert_eq!(
            classify(&serving, &line(Verdict::Deny, &["breached"], breached(42))),
            Change::Unchanged
        );
        assert_eq!(
            classify(&serving, &line(Verdict::Deny, &["breached"], breached(7))),
            Change::Reclassified
        );
        assert_eq!(
            classify(
                &serving,
                &line(Verdict::Allow, &[], Some(BreachOutcome::Clean))
            ),
            Change::Looser
        );
        // Allowed either way, but one knew and the other could not ask.
        let clean = line(Verdict::Allow, &[], Some(BreachOutcome::Clean));
        let unknown = line(
            Verdict::Allow,
            &[],
            Some(BreachOutcome::Unknown {
                reason: "secret reason".to_owned(),
            }),
        );
        assert_eq!(classify(&clean, &unknown), Change::Reclassified);
        assert!(
            !serde_json::to_string(&unknown)
                .unwrap()
                .contains("secret reason")
        );
    }
}
