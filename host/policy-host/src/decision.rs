//! Decisions as the host hands them to callers, with the identity of whoever made them.

use serde::Serialize;
use std::sync::Arc;

/// What the caller should do (mirrors the WIT `verdict`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Refuse.
    Deny,
    /// Ask the user for more (a CAPTCHA challenge).
    Challenge,
}

/// One reason behind a verdict: a stable code and a sentence of guidance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable, machine-readable code (e.g. `too-short`).
    pub code: String,
    /// A human-readable explanation.
    pub message: String,
}

impl Finding {
    /// A finding with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// The value of an [`Attribute`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttributeValue {
    /// A whole number.
    Integer(i64),
    /// A real number.
    Number(f64),
    /// Text.
    Text(String),
    /// A yes or no.
    Flag(bool),
}

/// A named measurement that goes with a decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribute {
    /// The attribute's name.
    pub name: String,
    /// Its value.
    pub value: AttributeValue,
}

/// A verdict with its findings and attributes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The overall verdict.
    pub verdict: Verdict,
    /// Why, one finding per reason.
    pub findings: Vec<Finding>,
    /// Extra facts the plugin reports (scores, counts).
    pub attributes: Vec<Attribute>,
}

impl Decision {
    /// The codes of the findings, in order: handy for callers and tests.
    pub fn codes(&self) -> Vec<&str> {
        self.findings
            .iter()
            .map(|finding| finding.code.as_str())
            .collect()
    }

    /// The attribute called `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&AttributeValue> {
        self.attributes
            .iter()
            .find(|attribute| attribute.name == name)
            .map(|attribute| &attribute.value)
    }
}

/// Exactly which code made a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginIdentity {
    /// The catalog slot (and file stem), e.g. `password-policy`.
    pub name: Arc<str>,
    /// The version the plugin reports.
    pub version: Arc<str>,
    /// sha-256 of the component file, lower-case hex.
    pub sha256: Arc<str>,
    /// Where it came from and which keys verified it; `None` for an unsigned file (no trust
    /// keys configured), and then not serialised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Arc<crate::source::Provenance>>,
}

/// A decision and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// The decision the caller acts on.
    pub decision: Decision,
    /// The plugin that decided; `None` when no plugin was loaded at all.
    pub plugin: Option<PluginIdentity>,
    /// `Some(error)` when the plugin failed and the fail policy produced the decision. Match
    /// on the variant (e.g. [`crate::PluginError::is_not_loaded`]), never on its text.
    pub fail_policy_applied: Option<crate::PluginError>,
}
