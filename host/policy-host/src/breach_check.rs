//! Calling a breach-check plugin, and turning its typed outcome into a decision.

use crate::{
    bindings::breach_check::exports::user_service::policy::breach_lookup,
    decision::{Attribute, AttributeValue, Decision, Finding, Verdict},
    engine::PolicyEngine,
    error::PluginError,
    loaded::{LoadedPlugin, PreInstance},
    plugin_call,
};
use serde::Serialize;

/// What the breach corpus said (mirrors the WIT `breach-outcome`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum BreachOutcome {
    /// Seen this many times: more than the plugin's `max-breaches`.
    Breached {
        /// How many times.
        count: u64,
    },
    /// Not seen often enough to count.
    Clean,
    /// The corpus could not be asked or understood; the fail policy decides. The reason is
    /// the plugin's own text (scrubbed of secrets): for logs, never serialised to callers.
    Unknown {
        #[serde(skip_serializing)]
        /// Why: the plugin's scrubbed text.
        reason: String,
    },
}

/// Longest `unknown` reason kept from a plugin.
const MAX_REASON_BYTES: usize = 512;

/// Runs `plugin` on `password` in a fresh instance.
pub(crate) async fn check(
    engine: &PolicyEngine,
    plugin: &LoadedPlugin,
    password: &str,
) -> Result<BreachOutcome, PluginError> {
    plugin_call::check_input_size(engine, password.len())?;
    let PreInstance::BreachCheck(pre) = &plugin.pre else {
        return Err(plugin.wrong_kind(crate::PluginKind::BreachCheck));
    };
    let outcome = plugin_call::run(engine, plugin, async |store| {
        let instance = pre.instantiate_async(&mut *store).await?;
        instance
            .user_service_policy_breach_lookup()
            .call_check(store, password)
            .await
    })
    .await?;
    match outcome {
        breach_lookup::BreachOutcome::Breached(count) => Ok(BreachOutcome::Breached { count }),
        breach_lookup::BreachOutcome::Clean => Ok(BreachOutcome::Clean),
        breach_lookup::BreachOutcome::Unknown(reason) => {
            // The plugin's own text: for logs and operators only, scrubbed and capped.
            let reason = engine.gateway().redactor().redact(&reason);
            Ok(BreachOutcome::Unknown {
                reason: crate::loaded::cap_text(reason, MAX_REASON_BYTES),
            })
        }
    }
}

/// The decision for a known outcome (`unknown` goes through the fail policy instead).
pub(crate) fn decide(outcome: &BreachOutcome) -> Option<Decision> {
    match outcome {
        BreachOutcome::Breached { count } => Some(Decision {
            verdict: Verdict::Deny,
            findings: vec![Finding::new(
                "breached",
                format!(
                    "This password has appeared in data breaches ({count} times), so attackers try it early; choose a different one."
                ),
            )],
            attributes: vec![Attribute {
                name: "breach-count".to_owned(),
                value: AttributeValue::Integer(i64::try_from(*count).unwrap_or(i64::MAX)),
            }],
        }),
        BreachOutcome::Clean => Some(Decision {
            verdict: Verdict::Allow,
            findings: Vec::new(),
            attributes: Vec::new(),
        }),
        BreachOutcome::Unknown { .. } => None,
    }
}
