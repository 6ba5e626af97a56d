//! Host configuration: where plugins live and how each one is run.

use crate::{
    egress::config::{DestinationConfig, EgressConfig},
    fail_policy::FailPolicy,
    kind::PluginKind,
    limits::RuntimeLimits,
};
use serde::Deserialize;
use std::{collections::BTreeMap, path::PathBuf};

/// The policy host's configuration (the `[plugins]` part of the service's TOML file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostConfig {
    /// Directory holding `<name>.wasm` files (`dir`).
    pub dir: PathBuf,
    /// Where compiled artifacts are cached by content hash (`cache-dir`); `None` disables it.
    #[serde(rename = "cache-dir")]
    pub cache_dir: Option<PathBuf>,
    /// Reload a plugin when its file changes (`watch`).
    pub watch: bool,
    /// Per-decision limits (`[plugins.limits]`).
    pub limits: RuntimeLimits,
    /// Per-plugin configuration, by slot name (`[plugins.slots.<name>]`). A `<name>.wasm` whose
    /// name is a plugin kind (`password-policy`, `breach-check`, `captcha`) needs no entry.
    pub slots: BTreeMap<String, PluginConfig>,
    /// The egress gateway: defaults and secrets (`[plugins.egress]`).
    pub egress: EgressConfig,
    /// Keys whose signatures make a candidate trusted (`[plugins.trust]`).
    pub trust: crate::source::signature::TrustConfig,
    /// Registries spoken to over plain HTTP (`insecure-registries`, `host:port`).
    #[serde(rename = "insecure-registries")]
    pub insecure_registries: Vec<String>,
    /// Credentials per registry (`[plugins.registry-credentials."host:port"]`).
    #[serde(rename = "registry-credentials")]
    pub registry_credentials: BTreeMap<String, crate::source::RegistryCredentialConfig>,
}

impl Default for HostConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("plugins"),
            cache_dir: None,
            watch: true,
            limits: RuntimeLimits::default(),
            slots: BTreeMap::new(),
            egress: EgressConfig::default(),
            trust: Default::default(),
            insecure_registries: Vec::new(),
            registry_credentials: BTreeMap::new(),
        }
    }
}

/// How one plugin slot is run.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PluginConfig {
    /// The world the plugin must implement; defaults to the kind named like the slot.
    pub kind: Option<PluginKind>,
    /// Refuse any file whose sha-256 (hex) differs (`sha256`).
    pub sha256: Option<String>,
    /// What callers get when the plugin fails (`fail-policy`); defaults per kind.
    #[serde(rename = "fail-policy")]
    pub fail_policy: Option<FailPolicy>,
    /// Plugin-scoped settings, read by the plugin through the `settings` interface.
    pub settings: BTreeMap<String, String>,
    /// Set to `false` to never load this plugin (`enabled`).
    pub enabled: Option<bool>,
    /// Per-flow overrides of `fail-policy` (`fail-policy-by-flow`, e.g. `login = "open"`);
    /// used by the captcha kind, whose decisions are per flow.
    #[serde(rename = "fail-policy-by-flow")]
    pub fail_policy_by_flow: BTreeMap<String, FailPolicy>,
    /// How long an accepted CAPTCHA token is remembered to refuse its replay
    /// (`replay-window-ms`, default 10 minutes: longer than any provider's validity).
    #[serde(rename = "replay-window-ms")]
    pub replay_window_ms: Option<u64>,
    /// Destinations the plugin may call (`[[plugins.slots.<name>.egress]]`); none by default.
    pub egress: Vec<DestinationConfig>,
    /// Most decisions of this slot running at once (`max-concurrent-decisions`); by default
    /// an equal share of `limits.max-concurrent-instances` that leaves one share free.
    #[serde(rename = "max-concurrent-decisions")]
    pub max_concurrent_decisions: Option<u32>,
    /// Where candidates come from (`source`): `"file"` (default) or `"oci://…"`.
    pub source: Option<String>,
    /// When a tag is resolved at the registry (`pull-policy`).
    #[serde(rename = "pull-policy")]
    pub pull_policy: Option<crate::source::PullPolicy>,
    /// Refuse candidates without enough trusted signatures (`require-signature`; default: true
    /// as soon as `[plugins.trust]` has a key).
    #[serde(rename = "require-signature")]
    pub require_signature: Option<bool>,
}

impl HostConfig {
    /// The configuration of slot `name`: its explicit entry, or the defaults when the name is a
    /// plugin kind. `None` for a name that is neither.
    pub fn slot(&self, name: &str) -> Option<ResolvedSlot> {
        let config = self.slots.get(name).cloned();
        let kind = config
            .as_ref()
            .and_then(|config| config.kind)
            .or_else(|| PluginKind::from_world(name))?;
        let config = config.unwrap_or_default();
        Some(ResolvedSlot {
            name: name.to_owned(),
            kind,
            fail_policy: config
                .fail_policy
                .unwrap_or_else(|| FailPolicy::default_for(kind)),
            sha256: config.sha256.map(|pin| pin.trim().to_ascii_lowercase()),
            settings: config.settings,
            enabled: config.enabled.unwrap_or(true),
            egress: config.egress,
            fail_policy_by_flow: config.fail_policy_by_flow,
            replay_window: std::time::Duration::from_millis(
                config.replay_window_ms.unwrap_or(600_000),
            ),
            max_concurrent: config
                .max_concurrent_decisions
                .unwrap_or_else(|| self.limits.default_slot_share(self.slot_names().len()))
                .max(1),
            source: config.source,
            pull_policy: config.pull_policy,
            require_signature: config.require_signature,
        })
    }

    /// Refuses a configuration whose plugin timeouts cannot fit inside the decision deadline:
    /// a destination's connect, first-byte or between-bytes timeout, or a plugin's own
    /// `timeout-ms` setting, at or above `limits.deadline-ms` would let an upstream eat the
    /// whole decision before any timeout fires. The message names both numbers.
    pub fn check_timeouts_fit(&self) -> Result<(), String> {
        let deadline = self.limits.deadline;
        for name in self.slot_names() {
            let Some(slot) = self.slot(&name).filter(|slot| slot.enabled) else {
                continue;
            };
            for destination in &slot.egress {
                let policy = destination.policy.as_ref().unwrap_or(&self.egress.defaults);
                for (key, timeout) in [
                    ("connect-timeout-ms", policy.connect_timeout),
                    ("first-byte-timeout-ms", policy.first_byte_timeout),
                    ("between-bytes-timeout-ms", policy.between_bytes_timeout),
                ] {
                    if timeout >= deadline {
                        return Err(format!(
                            "plugin `{name}`: {key} = {} for {} does not fit inside the decision \
                             deadline (limits.deadline-ms = {}); make it shorter than the deadline",
                            timeout.as_millis(),
                            destination.url,
                            deadline.as_millis()
                        ));
                    }
                }
            }
            if let Some(value) = slot.settings.get("timeout-ms") {
                let millis: u64 = value.trim().parse().map_err(|_| {
                    format!("plugin `{name}`: setting timeout-ms = {value:?} is not a number")
                })?;
                if u128::from(millis) >= deadline.as_millis() {
                    return Err(format!(
                        "plugin `{name}`: setting timeout-ms = {millis} does not fit inside the \
                         decision deadline (limits.deadline-ms = {}); make it shorter",
                        deadline.as_millis()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Every slot the configuration knows of: explicit entries and the kinds' default names.
    pub fn slot_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.slots.keys().cloned().collect();
        for kind in PluginKind::ALL {
            if !names.iter().any(|name| name == kind.world()) {
                names.push(kind.world().to_owned());
            }
        }
        names
    }
}

/// A slot's configuration with every default filled in.
#[derive(Debug, Clone)]
pub struct ResolvedSlot {
    /// The slot name the service asks for (e.g. `password-policy`).
    pub name: String,
    /// The kind of plugin the slot takes.
    pub kind: PluginKind,
    /// What a failed decision becomes.
    pub fail_policy: FailPolicy,
    /// The SHA-256 the component must have, when pinned.
    pub sha256: Option<String>,
    /// Settings the plugin reads through the `settings` import.
    pub settings: BTreeMap<String, String>,
    /// A disabled slot loads nothing.
    pub enabled: bool,
    /// The destinations the plugin may call through `wasi:http`.
    pub egress: Vec<DestinationConfig>,
    /// Fail policies that override `fail_policy` for one flow.
    pub fail_policy_by_flow: BTreeMap<String, FailPolicy>,
    /// How long a CAPTCHA idempotency key is remembered.
    pub replay_window: std::time::Duration,
    /// Most decisions of this slot running at once.
    pub max_concurrent: u32,
    /// `source` as configured (see [`crate::source::SlotSource`]).
    pub source: Option<String>,
    /// `pull-policy` as configured.
    pub pull_policy: Option<crate::source::PullPolicy>,
    /// `require-signature` as configured.
    pub require_signature: Option<bool>,
}
