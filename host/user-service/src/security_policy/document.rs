//! The security-policy document the Configuration Service serves at
//! `GET /config/user-service/security-policies`, its validation, and how it maps onto plugin
//! settings.
//!
//! ```json
//! {
//!   "version": "2026-11-28.1",
//!   "password": { "minLength": 12, "maxLength": 128, "blockedWords": ["acme"] },
//!   "breach": { "maxBreaches": 0 },
//!   "captcha": { "scoreThresholds": { "login": 0.5, "register": 0.7 } },
//!   "tenants": { "acme": { "allowedEmailDomains": ["acme.com"] }, "*": { "allowedEmailDomains": [] } }
//! }
//! ```
//!
//! Every part is optional; what is absent leaves the file configuration in force. Unknown
//! fields are ignored (the service may be older than its Configuration Service), but a field
//! with the wrong type or an out-of-range value rejects the whole document: a half-applied
//! security policy is worse than the previous one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The whole document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityPolicies {
    /// Free-form version label, reported by the admin API and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    /// Password minimums.
    pub password: PasswordMinimums,
    #[serde(default)]
    /// The breach check.
    pub breach: BreachPolicy,
    #[serde(default)]
    /// The CAPTCHA.
    pub captcha: CaptchaPolicy,
    /// Per tenant; `"*"` applies to tenants not listed.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantPolicy>,
}

/// Password minimums (the password-policy plugin's `min-length`, `max-length`, `blocked-words`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PasswordMinimums {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Shortest password allowed.
    pub min_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Longest password allowed.
    pub max_length: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Words no password may contain.
    pub blocked_words: Option<Vec<String>>,
}

/// Breach threshold (the breach-check plugin's `max-breaches`: more appearances than this
/// count as breached).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreachPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Breaches tolerated before a password counts as breached.
    pub max_breaches: Option<u64>,
}

/// CAPTCHA score thresholds per action (the captcha plugin's `score-threshold.<action>`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaptchaPolicy {
    #[serde(default)]
    /// Score thresholds by action.
    pub score_thresholds: BTreeMap<String, f64>,
}

/// What one tenant may do.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantPolicy {
    /// Email domains registration accepts; empty means any.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
}

/// NIST SP 800-63B: at least 8 characters, and at least 64 must be allowed.
const MIN_LENGTH_FLOOR: u32 = 8;
const MAX_LENGTH_FLOOR: u32 = 64;
const LENGTH_CEILING: u32 = 4096;
/// The actions the flows ask the captcha plugin about.
const CAPTCHA_ACTIONS: [&str; 3] = ["register", "login", "password_reset"];

impl SecurityPolicies {
    /// Parses and validates a document; the error says what is wrong with it.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|error| format!("not a security-policy document: {error}"))?;
        if !value.is_object() {
            return Err("not a security-policy document: not a JSON object".to_owned());
        }
        let document: Self = serde_json::from_value(value)
            .map_err(|error| format!("not a security-policy document: {error}"))?;
        document.validate()?;
        Ok(document)
    }

    fn validate(&self) -> Result<(), String> {
        let password = &self.password;
        if let Some(min) = password.min_length
            && !(MIN_LENGTH_FLOOR..=LENGTH_CEILING).contains(&min)
        {
            return Err(format!(
                "password.minLength {min} is outside {MIN_LENGTH_FLOOR}..={LENGTH_CEILING}"
            ));
        }
        if let Some(max) = password.max_length
            && !(MAX_LENGTH_FLOOR..=LENGTH_CEILING).contains(&max)
        {
            return Err(format!(
                "password.maxLength {max} is outside {MAX_LENGTH_FLOOR}..={LENGTH_CEILING}"
            ));
        }
        if let (Some(min), Some(max)) = (password.min_length, password.max_length)
            && min > max
        {
            return Err(format!(
                "password.minLength {min} is above password.maxLength {max}"
            ));
        }
        if let Some(words) = &password.blocked_words
            && let Some(word) = words
                .iter()
                .find(|word| word.trim().is_empty() || word.contains(','))
        {
            return Err(format!(
                "password.blockedWords has an empty word or one with a comma: {word:?}"
            ));
        }
        for (action, threshold) in &self.captcha.score_thresholds {
            if !(0.0..=1.0).contains(threshold) {
                return Err(format!(
                    "captcha.scoreThresholds.{action} {threshold} is outside 0..=1"
                ));
            }
            if !CAPTCHA_ACTIONS.contains(&action.as_str()) {
                return Err(format!(
                    "captcha.scoreThresholds has an unknown action {action:?} (known: {})",
                    CAPTCHA_ACTIONS.join(", ")
                ));
            }
        }
        for (tenant, policy) in &self.tenants {
            if let Some(domain) = policy.allowed_email_domains.iter().find(|domain| {
                domain.is_empty() || domain.contains('@') || domain.trim() != domain.as_str()
            }) {
                return Err(format!(
                    "tenants.{tenant}.allowedEmailDomains has an invalid domain {domain:?}"
                ));
            }
        }
        Ok(())
    }

    /// Settings for the password-policy plugin.
    pub fn password_settings(&self) -> BTreeMap<String, String> {
        let mut settings = BTreeMap::new();
        let password = &self.password;
        if let Some(min) = password.min_length {
            settings.insert("min-length".to_owned(), min.to_string());
        }
        if let Some(max) = password.max_length {
            settings.insert("max-length".to_owned(), max.to_string());
        }
        if let Some(words) = &password.blocked_words {
            settings.insert("blocked-words".to_owned(), words.join(","));
        }
        settings
    }

    /// Settings for the breach-check plugin.
    pub fn breach_settings(&self) -> BTreeMap<String, String> {
        self.breach
            .max_breaches
            .map(|max| BTreeMap::from([("max-breaches".to_owned(), max.to_string())]))
            .unwrap_or_default()
    }

    /// Settings for the captcha plugin.
    pub fn captcha_settings(&self) -> BTreeMap<String, String> {
        self.captcha
            .score_thresholds
            .iter()
            .map(|(action, threshold)| (format!("score-threshold.{action}"), threshold.to_string()))
            .collect()
    }

    /// `Err` with the allowed domains when `email` may not register for `tenant`.
    pub fn check_email_domain(&self, tenant: &str, email: &str) -> Result<(), Vec<String>> {
        let Some(policy) = self.tenants.get(tenant).or_else(|| self.tenants.get("*")) else {
            return Ok(());
        };
        let allowed = &policy.allowed_email_domains;
        let domain = email.rsplit_once('@').map_or("", |(_, domain)| domain);
        if allowed.is_empty()
            || allowed
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(domain))
        {
            Ok(())
        } else {
            Err(allowed.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_document_maps_onto_plugin_settings() {
        let document = SecurityPolicies::parse(
            br#"{"version":"7","password":{"minLength":12,"blockedWords":["acme","widget"]},
                "breach":{"maxBreaches":3},"captcha":{"scoreThresholds":{"login":0.7}},
                "tenants":{"acme":{"allowedEmailDomains":["acme.com"]}},"futureField":true}"#,
        )
        .unwrap();
        assert_eq!(document.password_settings()["min-length"], "12");
        assert_eq!(document.password_settings()["blocked-words"], "acme,widget");
        assert_eq!(document.breach_settings()["max-breaches"], "3");
        assert_eq!(document.captcha_settings()["score-threshold.login"], "0.7");
        assert!(document.check_email_domain("acme", "a@ACME.com").is_ok());
        assert_eq!(
            document.check_email_domain("acme", "a@evil.com"),
            Err(vec!["acme.com".to_owned()])
        );
        assert!(document.check_email_domain("other", "a@evil.com").is_ok());
    }

    #[test]
    fn wrong_types_and_ranges_reject_the_whole_document() {
        for garbage in [
            &b"<html>oops</html>"[..],
            br#"{"password":{"minLength":"twelve"}}"#,
            br#"{"password":{"minLength":4}}"#,
            br#"{"password":{"minLength":80,"maxLength":64}}"#,
            br#"{"captcha":{"scoreThresholds":{"login":1.5}}}"#,
            br#"{"tenants":{"acme":{"allowedEmailDomains":["@acme.com"]}}}"#,
            br"[]",
            br#"{"captcha":{"scoreThresholds":{"signup":0.5}}}"#,
        ] {
            assert!(
                SecurityPolicies::parse(garbage).is_err(),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
    }

    #[test]
    fn the_wildcard_tenant_covers_unlisted_tenants() {
        let document = SecurityPolicies::parse(
            br#"{"tenants":{"*":{"allowedEmailDomains":["example.com"]},"open":{"allowedEmailDomains":[]}}}"#,
        )
        .unwrap();
        assert!(
            document
                .check_email_domain("default", "a@example.com")
                .is_ok()
        );
        assert!(
            document
                .check_email_domain("default", "a@other.com")
                .is_err()
        );
        assert!(document.check_email_domain("open", "a@other.com").is_ok());
    }
}
