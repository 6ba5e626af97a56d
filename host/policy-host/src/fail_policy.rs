//! What the caller gets when a plugin cannot decide.

use crate::{
    decision::{Decision, Finding, Verdict},
    error::PluginError,
    kind::PluginKind,
};
use serde::Deserialize;

/// Fail open (allow, flagged with a finding) or fail closed (deny).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailPolicy {
    /// Allow, with a `<kind>-unavailable` finding so the caller can record it.
    Open,
    /// Deny, with a `<kind>-unavailable` finding.
    Closed,
}

impl FailPolicy {
    /// The default per kind: a password policy or CAPTCHA that cannot decide must not let
    /// everything through; a breach corpus that is down must not lock everyone out.
    pub fn default_for(kind: PluginKind) -> Self {
        match kind {
            PluginKind::PasswordPolicy | PluginKind::Captcha => Self::Closed,
            PluginKind::BreachCheck => Self::Open,
        }
    }

    /// The decision that stands in for a failed plugin.
    pub fn decide(self, kind: PluginKind, error: &PluginError) -> Decision {
        let (verdict, consequence) = match self {
            Self::Open => (Verdict::Allow, "the attempt was allowed without this check"),
            Self::Closed => (Verdict::Deny, "please try again in a moment"),
        };
        Decision {
            verdict,
            findings: vec![Finding::new(
                format!("{}-unavailable", kind.world()),
                format!(
                    "The {} is temporarily unavailable; {consequence}.",
                    kind.description()
                ),
            )],
            attributes: vec![crate::decision::Attribute {
                name: "failure".to_owned(),
                value: crate::decision::AttributeValue::Text(error.code().to_owned()),
            }],
        }
    }
}
