//! The decision log: one structured line per decision (who decided, what, how fast, whether a
//! fail policy stood in), never the inputs. The rollout diff is built from the same lines.

use crate::{
    breach_check::BreachOutcome,
    decision::{DecisionRecord, Verdict},
    egress_calls::EgressCall,
};
use serde::Serialize;
use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Which version of a slot made a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The serving version: its answer is used.
    Serving,
    /// A candidate run after the serving answer; its answer is only compared.
    Shadow,
    /// A candidate serving its canary share: its answer is used.
    Canary,
}

/// One decision, as logged and as compared. Carries no input: no password, token or email.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionLine {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The slot that decided.
    pub slot: String,
    /// Serving version, shadow or canary.
    pub role: Role,
    /// Plugin name; absent (like version and digest) when nothing was loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Plugin version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SHA-256 of the plugin's component, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Allow, deny or challenge.
    pub verdict: Verdict,
    /// The findings' codes, in the plugin's order.
    pub codes: Vec<String>,
    /// The decision's attributes (measurements such as `length`, never the input itself).
    pub attributes: serde_json::Value,
    /// Time the evaluation took, in microseconds.
    pub latency_us: u64,
    /// The error code when the fail policy decided instead of the plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fail_policy: Option<&'static str>,
    /// A breach check's outcome (`breached` with its count, `clean`, `unknown`; never the
    /// reason text): compared too, so a changed count is a reclassification.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<serde_json::Value>,
    /// The egress calls the decision made, in order (destination, method, status or error,
    /// cached, latency; see [`EgressCall`]).
    pub egress: Vec<EgressCall>,
    /// Egress calls past [`crate::egress_calls::MAX_CALLS_PER_DECISION`], not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub egress_dropped: u64,
}

#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's skip_serializing_if passes a reference"
)]
fn is_zero(value: &u64) -> bool {
    *value == 0
}

impl DecisionLine {
    /// The line for `record`, made by `role` in `latency`.
    pub fn new(slot: &str, role: Role, record: &DecisionRecord, latency: Duration) -> Self {
        let plugin = record.plugin.as_ref();
        Self {
            at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis() as u64),
            slot: slot.to_owned(),
            role,
            plugin: plugin.map(|plugin| plugin.name.to_string()),
            version: plugin.map(|plugin| plugin.version.to_string()),
            sha256: plugin.map(|plugin| plugin.sha256.to_string()),
            verdict: record.decision.verdict,
            codes: record
                .decision
                .findings
                .iter()
                .map(|finding| finding.code.clone())
                .collect(),
            attributes: serde_json::to_value(&record.decision.attributes)
                .unwrap_or(serde_json::Value::Null),
            latency_us: latency.as_micros().min(u128::from(u64::MAX)) as u64,
            fail_policy: record
                .fail_policy_applied
                .as_ref()
                .map(crate::error::PluginError::code),
            outcome: None,
            egress: Vec::new(),
            egress_dropped: 0,
        }
    }

    /// The line with the egress calls the decision made (from [`crate::egress_calls::collect`]).
    #[must_use]
    pub fn with_egress(mut self, calls: Vec<EgressCall>, dropped: u64) -> Self {
        self.egress = calls;
        self.egress_dropped = dropped;
        self
    }

    /// The line with a breach check's outcome.
    #[must_use]
    pub fn with_outcome(mut self, outcome: &BreachOutcome) -> Self {
        self.outcome = serde_json::to_value(outcome).ok();
        self
    }
}

/// Where decision lines go.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DecisionLogTarget {
    /// Nowhere (the default).
    #[default]
    Off,
    /// The service log, target `decision_log`, level info.
    Log,
    /// Appended to a file, one JSON object a line.
    File(PathBuf),
}

/// The decision log: a target and the share of decisions written.
pub struct DecisionLog {
    target: DecisionLogTarget,
    /// 0.0 ..= 1.0.
    sample: f64,
    file: Option<Mutex<std::fs::File>>,
}

impl Default for DecisionLog {
    fn default() -> Self {
        Self {
            target: DecisionLogTarget::Off,
            sample: 0.0,
            file: None,
        }
    }
}

impl DecisionLog {
    /// A log to `target` of `sample_percent` % of decisions (opening the file when there is one).
    pub fn new(target: DecisionLogTarget, sample_percent: f64) -> std::io::Result<Self> {
        let file = match &target {
            DecisionLogTarget::File(path) => Some(Mutex::new(open_append(path)?)),
            _ => None,
        };
        Ok(Self {
            target,
            sample: (sample_percent / 100.0).clamp(0.0, 1.0),
            file,
        })
    }

    /// Whether anything is logged at all (so callers skip building lines for nothing).
    pub fn is_on(&self) -> bool {
        self.target != DecisionLogTarget::Off && self.sample > 0.0
    }

    /// Writes `line` when it is sampled. A write error is logged, never the caller's problem.
    pub fn emit(&self, line: &DecisionLine) {
        if !self.is_on() || (self.sample < 1.0 && fastrand::f64() >= self.sample) {
            return;
        }
        let Ok(json) = serde_json::to_string(line) else {
            return;
        };
        match (&self.target, &self.file) {
            (DecisionLogTarget::Log, _) => {
                tracing::info!(target: "decision_log", decision = %json);
            }
            (DecisionLogTarget::File(path), Some(file)) => {
                let mut file = file
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Err(error) = writeln!(file, "{json}") {
                    tracing::warn!(path = %path.display(), %error, "cannot write the decision log");
                }
            }
            _ => {}
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}
