//! From a `siteverify` answer to a decision: every check and every provider error code mapped
//! to a stable finding.

use crate::settings::CaptchaSettings;
use serde::Deserialize;

/// The fields of a `siteverify` answer the three providers share (missing ones are `None`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SiteverifyAnswer {
    /// Whether the token was valid.
    pub success: bool,
    #[serde(rename = "error-codes", default)]
    /// The provider's error codes.
    pub error_codes: Vec<String>,
    /// When the challenge was solved (RFC 3339).
    pub challenge_ts: Option<String>,
    /// The site the token was issued for.
    pub hostname: Option<String>,
    /// The risk score (reCAPTCHA v3, hCaptcha Enterprise).
    pub score: Option<f64>,
    /// The action the token was issued for.
    pub action: Option<String>,
}

/// The verdict of a captcha decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A human.
    Allow,
    /// Not a human, or a bad token.
    Deny,
    /// Unsure: ask for a harder challenge.
    Challenge,
}

/// A finding: stable code and guidance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// A stable code (one of [`codes`]).
    pub code: &'static str,
    /// A human-readable explanation.
    pub message: String,
}

/// Stable finding codes. Never reword or reuse one.
pub mod codes {
    /// No token was sent.
    pub const MISSING: &str = "captcha-missing";
    /// The provider refused the token.
    pub const INVALID: &str = "captcha-invalid";
    /// The token is too old or was used before.
    pub const EXPIRED_OR_REUSED: &str = "captcha-expired-or-reused";
    /// The score is under the threshold.
    pub const SCORE_LOW: &str = "captcha-score-low";
    /// The token was issued for another action.
    pub const ACTION_MISMATCH: &str = "captcha-action-mismatch";
    /// The token was issued for another site.
    pub const HOSTNAME_MISMATCH: &str = "captcha-hostname-mismatch";
    /// The secret or the settings are wrong.
    pub const MISCONFIGURED: &str = "captcha-misconfigured";
    /// The provider could not be asked.
    pub const UNAVAILABLE: &str = "captcha-unavailable";
}

/// The finding for one provider error code.
pub fn finding_for_error_code(code: &str) -> Finding {
    let (finding, message) = match code {
        "missing-input-response" => (codes::MISSING, "Complete the CAPTCHA and try again."),
        "timeout-or-duplicate" | "invalid-or-already-seen-response" | "already-seen-response" => (
            codes::EXPIRED_OR_REUSED,
            "The CAPTCHA expired or was already used; complete it again.",
        ),
        "missing-input-secret"
        | "invalid-input-secret"
        | "sitekey-secret-mismatch"
        | "invalid-sitekey"
        | "invalid-widget-id"
        | "invalid-parsed-secret" => (
            codes::MISCONFIGURED,
            "The CAPTCHA is misconfigured on our side; please try again later.",
        ),
        "internal-error" => (
            codes::UNAVAILABLE,
            "The CAPTCHA service is unavailable; please try again in a moment.",
        ),
        _ => (
            codes::INVALID,
            "The CAPTCHA could not be verified; complete it again.",
        ),
    };
    Finding {
        code: finding,
        message: message.to_owned(),
    }
}

/// A decision plus the attributes worth recording.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// Allow, deny or challenge.
    pub outcome: Outcome,
    /// Why.
    pub findings: Vec<Finding>,
    /// The score, when the provider gave one.
    pub score: Option<f64>,
    /// The hostname, when the provider gave one.
    pub hostname: Option<String>,
}

/// A failed decision with one finding.
pub fn refuse(code: &'static str, message: &str) -> Judgement {
    Judgement {
        outcome: Outcome::Deny,
        findings: vec![Finding {
            code,
            message: message.to_owned(),
        }],
        score: None,
        hostname: None,
    }
}

/// Judges an answer for `action`, at Unix time `now`.
pub fn judge(
    answer: &SiteverifyAnswer,
    action: &str,
    settings: &CaptchaSettings,
    now: i64,
) -> Judgement {
    let mut judgement = Judgement {
        outcome: Outcome::Allow,
        findings: Vec::new(),
        score: answer.score,
        hostname: answer.hostname.clone(),
    };
    if !answer.success {
        let mut findings: Vec<Finding> = answer
            .error_codes
            .iter()
            .map(|code| finding_for_error_code(code))
            .collect();
        if findings.is_empty() {
            findings.push(finding_for_error_code("unknown"));
        }
        findings.dedup_by(|a, b| a.code == b.code);
        judgement.outcome = Outcome::Deny;
        judgement.findings = findings;
        return judgement;
    }
    let mut deny = |code: &'static str, message: String| {
        judgement.findings.push(Finding { code, message });
    };
    if let Some(expected) = &settings.expected_hostname
        && answer.hostname.as_deref() != Some(expected.as_str())
    {
        deny(
            codes::HOSTNAME_MISMATCH,
            "The CAPTCHA was solved for another site; complete it on this page.".to_owned(),
        );
    }
    if settings.check_action
        // Turnstile reports "" when the widget set no action: that is "not reported".
        && let Some(reported) = answer.action.as_deref().filter(|reported| !reported.is_empty())
        && reported != action
    {
        deny(
            codes::ACTION_MISMATCH,
            "The CAPTCHA was solved for another action; complete it again.".to_owned(),
        );
    }
    match answer
        .challenge_ts
        .as_deref()
        .map(crate::timestamp::parse_rfc3339)
    {
        Some(Some(solved_at)) if now - solved_at > settings.max_token_age_secs as i64 => {
            deny(
                codes::EXPIRED_OR_REUSED,
                "The CAPTCHA expired; complete it again.".to_owned(),
            );
        }
        Some(None) => deny(
            codes::INVALID,
            "The CAPTCHA answer could not be read; complete it again.".to_owned(),
        ),
        _ => {}
    }
    let mut challenge = false;
    if let Some(score) = answer.score {
        let threshold = settings.score_threshold(action);
        if score < threshold {
            match settings.challenge_threshold(action) {
                Some(floor) if score >= floor && judgement.findings.is_empty() => challenge = true,
                _ => {}
            }
            judgement.findings.push(Finding {
                code: codes::SCORE_LOW,
                message: "We could not confirm you are human; please complete an extra check."
                    .to_owned(),
            });
        }
    }
    judgement.outcome = if judgement.findings.is_empty() {
        Outcome::Allow
    } else if challenge {
        Outcome::Challenge
    } else {
        Outcome::Deny
    };
    judgement
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> CaptchaSettings {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CaptchaSettings::from_lookup(|key| map.get(key).cloned())
            .unwrap()
            .0
    }

    const NOW: i64 = 1_795_867_260;

    fn answer(score: Option<f64>, action: Option<&str>) -> SiteverifyAnswer {
        SiteverifyAnswer {
            success: true,
            challenge_ts: Some("2026-11-28T12:00:00Z".to_owned()),
            hostname: Some("id.example.org".to_owned()),
            score,
            action: action.map(str::to_owned),
            ..SiteverifyAnswer::default()
        }
    }

    fn codes_of(judgement: &Judgement) -> Vec<&'static str> {
        judgement
            .findings
            .iter()
            .map(|finding| finding.code)
            .collect()
    }

    #[test]
    fn a_good_answer_is_allowed() {
        let judgement = judge(
            &answer(Some(0.9), Some("login")),
            "login",
            &settings(&[("provider", "recaptcha")]),
            NOW,
        );
        assert_eq!(judgement.outcome, Outcome::Allow);
    }

    #[test]
    fn each_check_has_its_code() {
        let config = settings(&[
            ("provider", "turnstile"),
            ("expected-hostname", "id.example.org"),
        ]);
        let mut wrong_host = answer(None, None);
        wrong_host.hostname = Some("evil.example".to_owned());
        assert_eq!(
            codes_of(&judge(&wrong_host, "login", &config, NOW)),
            [codes::HOSTNAME_MISMATCH]
        );
        assert_eq!(
            codes_of(&judge(
                &answer(None, Some("register")),
                "login",
                &config,
                NOW
            )),
            [codes::ACTION_MISMATCH]
        );
        assert_eq!(
            codes_of(&judge(&answer(None, None), "login", &config, NOW + 3600)),
            [codes::EXPIRED_OR_REUSED]
        );
        let failed = SiteverifyAnswer {
            success: false,
            error_codes: vec!["invalid-input-secret".to_owned()],
            ..Default::default()
        };
        assert_eq!(
            codes_of(&judge(&failed, "login", &config, NOW)),
            [codes::MISCONFIGURED]
        );
    }

    #[test]
    fn scores_between_thresholds_challenge() {
        let config = settings(&[
            ("provider", "recaptcha"),
            ("score-threshold.login", "0.7"),
            ("challenge-threshold", "0.3"),
        ]);
        assert_eq!(
            judge(&answer(Some(0.8), None), "login", &config, NOW).outcome,
            Outcome::Allow
        );
        assert_eq!(
            judge(&answer(Some(0.5), None), "login", &config, NOW).outcome,
            Outcome::Challenge
        );
        assert_eq!(
            judge(&answer(Some(0.1), None), "login", &config, NOW).outcome,
            Outcome::Deny
        );
        assert_eq!(
            judge(&answer(Some(0.5), None), "register", &config, NOW).outcome,
            Outcome::Allow,
            "default 0.5"
        );
    }
}
