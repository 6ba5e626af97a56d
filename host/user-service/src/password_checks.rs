//! The two checks of a new password (password policy, breach check) behind the one interface
//! the flows call. [`PasswordChecks::plugins`] runs them in the policy host's sandboxed
//! plugins: the service's only mode. [`PasswordChecks::native`] runs the same rules compiled
//! into the process from the plugin crates, with the same slot settings, egress gateway,
//! response cache and fail policies; it exists so the service benchmark can say what the
//! isolation costs end to end, and no configuration selects it.

use policy_host::{
    AttributeValue, BreachOutcome, BreachRecord, DecisionRecord, PasswordInput, PolicyHost,
    Verdict,
    decision::{Attribute, Decision, Finding},
};
use std::{sync::Arc, time::Instant};

/// Range answers are ~30 KiB with padding; the plugin refuses anything above this too.
const MAX_RANGE_BYTES: usize = 1 << 20;

/// Runs the checks of a new password.
#[derive(Clone)]
pub struct PasswordChecks {
    host: Arc<PolicyHost>,
    native: bool,
}

impl PasswordChecks {
    /// The checks as the plugins in `host`'s slots decide them.
    pub fn plugins(host: Arc<PolicyHost>) -> Self {
        Self {
            host,
            native: false,
        }
    }

    /// The same rules compiled natively (benchmarks and their tests only): the slots'
    /// settings and serving identities, the breach range fetched through the same gateway
    /// and cache, an unusable answer through the same fail policy.
    pub fn native(host: Arc<PolicyHost>) -> Self {
        Self { host, native: true }
    }

    /// The policy host the checks run in (or, natively, take their settings from).
    pub fn host(&self) -> &Arc<PolicyHost> {
        &self.host
    }

    /// The password policy of slot `slot` on `input`, for `account` (the key a canary routes
    /// by; see [`PolicyHost::evaluate_password_staged`]). The native mode has no candidates.
    pub async fn evaluate_password(
        &self,
        slot: &str,
        input: &PasswordInput,
        account: Option<&str>,
    ) -> DecisionRecord {
        if !self.native {
            return self
                .host
                .evaluate_password_staged(slot, input, account)
                .await;
        }
        let Some(plugin) = self
            .host
            .catalog()
            .slot(slot)
            .and_then(policy_host::catalog::Slot::current)
        else {
            // Nothing serving: the host's answer (the fail policy) is the answer either way.
            return self.host.evaluate_password(slot, input).await;
        };
        let settings = self
            .host
            .catalog()
            .slot(slot)
            .map(policy_host::catalog::Slot::effective_settings)
            .unwrap_or_default();
        let (policy, _) = password_policy::settings::PolicySettings::from_lookup(|name| {
            settings.get(name).cloned()
        });
        let outcome = password_policy::rules::evaluate(
            password_policy::rules::PasswordInput {
                password: &input.password,
                has_mfa: input.has_mfa,
                context_words: &input.context_words,
            },
            &policy,
        );
        let integer =
            |value: usize| AttributeValue::Integer(i64::try_from(value).unwrap_or(i64::MAX));
        DecisionRecord {
            decision: Decision {
                verdict: match outcome.verdict {
                    password_policy::rules::Verdict::Allow => Verdict::Allow,
                    password_policy::rules::Verdict::Deny => Verdict::Deny,
                },
                findings: outcome
                    .findings
                    .into_iter()
                    .map(|finding| Finding::new(finding.code, finding.message))
                    .collect(),
                attributes: vec![
                    Attribute {
                        name: "length".to_owned(),
                        value: integer(outcome.length),
                    },
                    Attribute {
                        name: "min-length".to_owned(),
                        value: integer(outcome.min_length),
                    },
                ],
            },
            plugin: Some(plugin.identity.clone()),
            fail_policy_applied: None,
        }
    }

    /// The breach check of slot `slot` on `password`, for `account` (the key a canary routes
    /// by; see [`PolicyHost::check_breach_staged`]). The native mode has no candidates.
    pub async fn check_breach(
        &self,
        slot: &str,
        password: &str,
        account: Option<&str>,
    ) -> BreachRecord {
        if !self.native {
            return self.host.check_breach_staged(slot, password, account).await;
        }
        let serving = self
            .host
            .catalog()
            .slot(slot)
            .and_then(policy_host::catalog::Slot::current);
        let Some((plugin, egress)) = serving.and_then(|plugin| {
            let egress = plugin.egress()?.clone();
            Some((plugin, egress))
        }) else {
            return self.host.check_breach(slot, password).await;
        };
        let settings = self
            .host
            .catalog()
            .slot(slot)
            .map(policy_host::catalog::Slot::effective_settings)
            .unwrap_or_default();
        let (config, _) =
            breach_check::settings::BreachSettings::from_lookup(|name| settings.get(name).cloned());
        let (prefix, suffix) = breach_check::hash::prefix_and_suffix(password);
        let outcome = match self.fetch_range(&egress, &config, &prefix).await {
            Ok((status, body)) => match breach_check::lookup_in_response(status, &body, &suffix) {
                breach_check::Lookup::Count(count) if count > config.max_breaches => {
                    BreachOutcome::Breached { count }
                }
                breach_check::Lookup::Count(_) => BreachOutcome::Clean,
                breach_check::Lookup::Unknown(reason) => BreachOutcome::Unknown { reason },
            },
            Err(reason) => BreachOutcome::Unknown { reason },
        };
        self.host.breach_record(slot, &plugin, outcome)
    }

    /// `GET <base-url>/range/<prefix>` through the gateway, as the plugin sends it.
    async fn fetch_range(
        &self,
        egress: &policy_host::egress::CallerPolicy,
        config: &breach_check::settings::BreachSettings,
        prefix: &str,
    ) -> Result<(u16, bytes::Bytes), String> {
        let url = format!("{}/range/{prefix}", config.base_url.trim_end_matches('/'));
        let request = http::Request::get(url)
            .header("add-padding", "true")
            .header("user-agent", config.user_agent.as_str())
            .body(bytes::Bytes::new())
            .map_err(|error| format!("range request: {error}"))?;
        // The budget a plugin decision has (the host's deadline), as the plugin's call gets.
        let engine = self.host.catalog().engine();
        let deadline = Instant::now() + engine.limits().deadline;
        let response = engine
            .gateway()
            .send(egress, request, None, deadline)
            .await
            .map_err(|error| format!("range request failed: {error}"))?;
        if response.body.len() > MAX_RANGE_BYTES {
            return Err("range answer too large".to_owned());
        }
        Ok((response.status.as_u16(), response.body))
    }
}
