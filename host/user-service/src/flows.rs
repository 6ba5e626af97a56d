//! The policy checks the flows share: password policy + breach check for a new password, and
//! the CAPTCHA decision. A slot that is disabled (empty name) or has no plugin loaded is
//! skipped and reported, so every flow works without any given plugin.

use crate::{config::FlowConfig, password_checks::PasswordChecks, problem::Problem};
use http::StatusCode;
use policy_host::{
    AttributeValue, BreachOutcome, CaptchaInput, DecisionRecord, Finding, PasswordInput,
    PolicyHost, Verdict,
};
use serde::Serialize;

/// Passwords longer than this (in bytes) are refused before any plugin runs.
pub const MAX_PASSWORD_BYTES: usize = 4096;

/// What the checks of a new password found.
#[derive(Debug, Serialize)]
pub struct PasswordReport {
    /// The combined verdict.
    pub verdict: Verdict,
    /// Every finding of every check.
    pub findings: Vec<Finding>,
    /// Length in code points after NFKC, from the policy plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub length: Option<i64>,
    /// The breach corpus's answer, when it was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breach: Option<BreachOutcome>,
    /// Checks that did not run or were decided by a fail policy, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Runs the password policy (with `context` words) and the breach check on `password`.
pub async fn check_new_password(
    checks: &PasswordChecks,
    flows: &FlowConfig,
    password: &str,
    context: Vec<String>,
    has_mfa: bool,
) -> PasswordReport {
    let mut report = PasswordReport {
        verdict: Verdict::Allow,
        findings: Vec::new(),
        length: None,
        breach: None,
        warnings: Vec::new(),
    };
    if password.len() > MAX_PASSWORD_BYTES {
        report.verdict = Verdict::Deny;
        report
            .findings
            .push(Finding::new("too-long", "Use at most 64 characters."));
        return report;
    }
    // The two checks are independent: run them together, so the request waits for the
    // slower one, not the sum.
    // A staged candidate (shadow or canary) routes by the account; the decision log.
    let account = crate::rollout::account_key(&context).map(str::to_owned);
    let account = account.as_deref();
    let policy = async {
        let slot = flows.password_policy.as_deref()?;
        let input = PasswordInput {
            password: password.to_owned(),
            has_mfa,
            context_words: context,
        };
        Some(checks.evaluate_password(slot, &input, account).await)
    };
    let breach = async {
        let slot = flows.breach_check.as_deref()?;
        Some(checks.check_breach(slot, password, account).await)
    };
    let (policy, breach) = tokio::join!(policy, breach);
    if let Some(record) = policy {
        if let Some(AttributeValue::Integer(length)) = record.decision.attribute("length") {
            report.length = Some(*length);
        }
        merge(&mut report, record, "password policy");
    }
    if let Some(record) = breach {
        report.breach = Some(record.outcome.clone());
        merge(&mut report, record.record, "breach check");
    }
    report
}

/// Folds a decision into the report; an unloaded plugin is a warning, not a refusal.
fn merge(report: &mut PasswordReport, record: DecisionRecord, what: &str) {
    // Only stable codes reach the caller: an error's text can carry what a plugin wrote.
    if let Some(error) = &record.fail_policy_applied {
        if error.is_not_loaded() {
            report
                .warnings
                .push(format!("{what} skipped: no plugin is loaded"));
            return;
        }
        report.warnings.push(format!(
            "{what} unavailable ({}); decided by the fail policy",
            error.code()
        ));
    }
    if record.decision.verdict != Verdict::Allow {
        report.verdict = Verdict::Deny;
    }
    report.findings.extend(record.decision.findings);
}

/// The problem for a refused new password.
pub fn weak_password(report: PasswordReport) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "weak-password",
        "The password does not meet the policy",
    )
    .detail("Every finding below has a code and a sentence of guidance.")
    .findings(report.findings)
}

/// Verifies a CAPTCHA for `action` by `account` (the canonical email: a staged canary routes
/// by it); `Ok(())` when allowed or when CAPTCHA is disabled.
pub async fn require_captcha(
    host: &PolicyHost,
    flows: &FlowConfig,
    token: Option<&str>,
    action: &str,
    remote_ip: Option<String>,
    account: Option<&str>,
) -> Result<(), Problem> {
    let Some(slot) = flows.captcha.as_deref() else {
        return Ok(());
    };
    let Some(token) = token.filter(|token| !token.trim().is_empty()) else {
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "captcha-required",
            "A CAPTCHA is required",
        )
        .detail("Complete the CAPTCHA and send its token as `captcha_token`.")
        .findings(vec![Finding::new(
            "captcha-missing",
            "Complete the CAPTCHA and try again.",
        )]));
    };
    let input = CaptchaInput {
        token: token.to_owned(),
        action: action.to_owned(),
        remote_ip,
        idempotency_key: None,
    };
    let record = host.verify_captcha_staged(slot, &input, account).await;
    if record
        .fail_policy_applied
        .as_ref()
        .is_some_and(policy_host::PluginError::is_not_loaded)
    {
        tracing::warn!(slot, "captcha configured but no plugin loaded; skipping");
        return Ok(());
    }
    match record.decision.verdict {
        Verdict::Allow => Ok(()),
        Verdict::Challenge => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "captcha-challenge",
            "An additional check is required",
        )
        .findings(record.decision.findings)),
        Verdict::Deny => Err(Problem::new(
            StatusCode::FORBIDDEN,
            "captcha-failed",
            "The CAPTCHA was not accepted",
        )
        .findings(record.decision.findings)),
    }
}
