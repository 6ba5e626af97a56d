//! The WASI 0.2 component: binds [`crate::rules`] to the `password-policy` world.

use crate::{
    rules::{self, PasswordInput, Verdict},
    settings::PolicySettings,
};

wit_bindgen::generate!({
    world: "password-policy",
    path: "../../wit",
});

use exports::user_service::policy::password_rules::{Guest, PasswordInput as WitInput};
use user_service::policy::{
    logging::{Level, log},
    settings,
    types::{Attribute, AttributeValue, Decision, Finding, PluginInfo, Verdict as WitVerdict},
};

struct PasswordPolicy;

impl Guest for PasswordPolicy {
    fn info() -> PluginInfo {
        PluginInfo {
            name: crate::PLUGIN_NAME.to_owned(),
            version: crate::PLUGIN_VERSION.to_owned(),
        }
    }

    fn evaluate(input: WitInput) -> Decision {
        let (policy, warnings) = PolicySettings::from_lookup(settings::get);
        for warning in warnings {
            log(Level::Warn, &format!("setting ignored: {warning}"));
        }
        let outcome = rules::evaluate(
            PasswordInput {
                password: &input.password,
                has_mfa: input.has_mfa,
                context_words: &input.context_words,
            },
            &policy,
        );
        Decision {
            verdict: match outcome.verdict {
                Verdict::Allow => WitVerdict::Allow,
                Verdict::Deny => WitVerdict::Deny,
            },
            findings: outcome
                .findings
                .into_iter()
                .map(|finding| Finding {
                    code: finding.code.to_owned(),
                    message: finding.message,
                })
                .collect(),
            attributes: vec![
                Attribute {
                    name: "length".to_owned(),
                    value: AttributeValue::Integer(outcome.length as i64),
                },
                Attribute {
                    name: "min-length".to_owned(),
                    value: AttributeValue::Integer(outcome.min_length as i64),
                },
            ],
        }
    }
}

export!(PasswordPolicy);
