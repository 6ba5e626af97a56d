//! Calling a password-policy plugin: input checks, one fresh instance, output checks.

use crate::{
    bindings::{password_policy::exports::user_service::policy::password_rules, types},
    decision::{Attribute, AttributeValue, Decision, Finding, Verdict},
    engine::PolicyEngine,
    error::PluginError,
    loaded::{LoadedPlugin, PreInstance},
    plugin_call,
};

/// A new password and what is known about its account.
#[derive(Debug, Clone, Default)]
pub struct PasswordInput {
    /// The candidate password as typed.
    pub password: String,
    /// Whether the account has a second factor (a lower minimum length may apply).
    pub has_mfa: bool,
    /// Words tied to the account and service: email, username, display name, service name.
    pub context_words: Vec<String>,
}

/// The input of the smoke decision every candidate must survive before it serves.
pub(crate) fn smoke_input() -> PasswordInput {
    PasswordInput {
        password: "smoke test: correct horse battery staple".to_owned(),
        has_mfa: false,
        context_words: vec!["smoke-test@example.org".to_owned(), "Smoke Test".to_owned()],
    }
}

/// Most context words passed to a plugin; the rest are dropped.
const MAX_CONTEXT_WORDS: usize = 16;

/// Runs `plugin` on `input` in a fresh instance, within the decision deadline.
pub(crate) async fn evaluate(
    engine: &PolicyEngine,
    plugin: &LoadedPlugin,
    input: &PasswordInput,
) -> Result<Decision, PluginError> {
    let size = input.password.len() + input.context_words.iter().map(String::len).sum::<usize>();
    plugin_call::check_input_size(engine, size)?;
    let PreInstance::PasswordPolicy(pre) = &plugin.pre else {
        return Err(plugin.wrong_kind(crate::PluginKind::PasswordPolicy));
    };
    let wit_input = password_rules::PasswordInput {
        password: input.password.clone(),
        has_mfa: input.has_mfa,
        context_words: input
            .context_words
            .iter()
            .take(MAX_CONTEXT_WORDS)
            .cloned()
            .collect(),
    };
    let decision = plugin_call::run(engine, plugin, async |store| {
        let instance = pre.instantiate_async(&mut *store).await?;
        instance
            .user_service_policy_password_rules()
            .call_evaluate(store, &wit_input)
            .await
    })
    .await?;
    from_wit(decision, engine, plugin)
}

/// Converts and bounds a plugin's decision: a plugin may not flood the caller.
pub(crate) fn from_wit(
    decision: types::Decision,
    engine: &PolicyEngine,
    plugin: &LoadedPlugin,
) -> Result<Decision, PluginError> {
    let limits = engine.limits();
    // Plugin text is scrubbed of every secret before it goes anywhere, errors included.
    let redactor = engine.gateway().redactor();
    let invalid = |message: String| PluginError::InvalidOutput {
        name: plugin.identity.name.to_string(),
        version: plugin.identity.version.to_string(),
        message: redactor.redact(&message),
    };
    if decision.findings.len() > limits.max_findings
        || decision.attributes.len() > limits.max_findings
    {
        return Err(invalid(format!(
            "{} findings and {} attributes; at most {} of each are accepted",
            decision.findings.len(),
            decision.attributes.len(),
            limits.max_findings
        )));
    }
    let check_text = |what: &str, text: &str| {
        if text.len() > limits.max_text_bytes {
            Err(invalid(format!(
                "a {what} of {} bytes; at most {} are accepted",
                text.len(),
                limits.max_text_bytes
            )))
        } else {
            Ok(())
        }
    };
    let mut findings = Vec::with_capacity(decision.findings.len());
    for finding in decision.findings {
        check_text("finding code", &finding.code)?;
        check_text("finding message", &finding.message)?;
        if finding.code.is_empty()
            || !finding
                .code
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid(format!(
                "finding code {:?} is not kebab-case",
                finding.code
            )));
        }
        findings.push(Finding {
            code: finding.code,
            message: redactor.redact(&finding.message),
        });
    }
    let mut attributes = Vec::with_capacity(decision.attributes.len());
    for attribute in decision.attributes {
        check_text("attribute name", &attribute.name)?;
        let value = match attribute.value {
            types::AttributeValue::Integer(value) => AttributeValue::Integer(value),
            types::AttributeValue::Number(value) => AttributeValue::Number(value),
            types::AttributeValue::Flag(value) => AttributeValue::Flag(value),
            types::AttributeValue::Text(value) => {
                check_text("attribute value", &value)?;
                AttributeValue::Text(redactor.redact(&value))
            }
        };
        attributes.push(Attribute {
            name: attribute.name,
            value,
        });
    }
    let verdict = match decision.verdict {
        types::Verdict::Allow => Verdict::Allow,
        types::Verdict::Deny => Verdict::Deny,
        types::Verdict::Challenge => Verdict::Challenge,
    };
    Ok(Decision {
        verdict,
        findings,
        attributes,
    })
}
