//! `[rollout]`: how this replica follows the desired state and reports to the fleet.

use serde::Deserialize;
use std::time::Duration;

/// `[rollout]` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RolloutConfig {
    /// Follow the desired state in the database (`enabled`, default true).
    pub enabled: bool,
    /// This replica's name in the fleet (`replica-id`); default `<hostname>:<port>`.
    #[serde(rename = "replica-id")]
    pub replica_id: Option<String>,
    /// How often the desired state is read even without a hint (`poll-interval-ms`).
    #[serde(rename = "poll-interval-ms")]
    pub poll_interval_ms: u64,
    /// How often this replica writes its fleet row (`heartbeat-interval-ms`).
    #[serde(rename = "heartbeat-interval-ms")]
    pub heartbeat_interval_ms: u64,
    /// A replica whose heartbeat is older than this is flagged as lagging (`lag-after-ms`).
    #[serde(rename = "lag-after-ms")]
    pub lag_after_ms: u64,
    /// Largest component accepted by `PUT /admin/plugins/{name}/desired`
    /// (`max-component-bytes`).
    #[serde(rename = "max-component-bytes")]
    pub max_component_bytes: usize,
    /// `off` (default), `log` (the service log, target `decision_log`) or a file path
    /// (`decision-log`).
    #[serde(rename = "decision-log")]
    pub decision_log: String,
    /// Share of decisions written to the decision log, 0–100 (`decision-log-sample-percent`).
    #[serde(rename = "decision-log-sample-percent")]
    pub decision_log_sample_percent: f64,
    /// The deployment's key for compiled artifacts shared through the database
    /// (`artifact-key = { file = "…" }`, at least 32 bytes, the same on every replica). Unset
    /// (the default): nothing is shared and every replica compiles each new version itself.
    #[serde(rename = "artifact-key")]
    pub artifact_key: Option<egress::config::SecretSource>,
}

impl Default for RolloutConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            replica_id: None,
            poll_interval_ms: 500,
            heartbeat_interval_ms: 1_000,
            lag_after_ms: 5_000,
            max_component_bytes: 32 << 20,
            decision_log: "off".to_owned(),
            decision_log_sample_percent: 100.0,
            artifact_key: None,
        }
    }
}

impl RolloutConfig {
    /// `poll-interval-ms` as a duration, at least 10 ms.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms.max(10))
    }

    /// `heartbeat-interval-ms` as a duration, at least 10 ms.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms.max(10))
    }

    /// The replica id: configured, or `<hostname>:<port>`.
    pub fn replica_id(&self, port: u16) -> String {
        self.replica_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME")
                .ok()
                .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
                .map(|name| name.trim().to_owned())
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| "localhost".to_owned());
            format!("{host}:{port}")
        })
    }

    /// The decision log this configuration asks for.
    pub fn decision_log(&self) -> std::io::Result<policy_host::rollout::decision_log::DecisionLog> {
        use policy_host::rollout::decision_log::{DecisionLog, DecisionLogTarget};
        let target = match self.decision_log.as_str() {
            "" | "off" => DecisionLogTarget::Off,
            "log" => DecisionLogTarget::Log,
            path => DecisionLogTarget::File(path.into()),
        };
        DecisionLog::new(target, self.decision_log_sample_percent)
    }
}
