//! The plugin's settings, read through the host's `settings` interface.

use crate::provider::Provider;

/// How tokens are verified and judged.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptchaSettings {
    /// `provider`: `recaptcha`, `hcaptcha` or `turnstile`.
    pub provider: Provider,
    /// `base-url`: the provider's base URL (default: its public endpoint).
    pub base_url: String,
    /// `secret-name`: the host secret holding the provider secret (default `captcha-secret`).
    pub secret_name: String,
    /// `sitekey`: sent to hCaptcha, which checks it matches the secret.
    pub sitekey: Option<String>,
    /// `expected-hostname`: the site the widget must have been solved on.
    pub expected_hostname: Option<String>,
    /// `check-action`: the token's `action` must equal the flow (`register`, `login`,
    /// `password_reset`) when the provider reports one (default true).
    pub check_action: bool,
    /// `score-threshold` (default 0.5), or `score-threshold.<action>` per action: a lower score
    /// is denied (or challenged, see below).
    score_thresholds: Vec<(String, f64)>,
    default_score_threshold: f64,
    /// `challenge-threshold` / `challenge-threshold.<action>`: a score at or above this but
    /// below the score threshold gives `challenge` (step-up) instead of `deny`.
    challenge_thresholds: Vec<(String, f64)>,
    default_challenge_threshold: Option<f64>,
    /// `max-token-age-s`: oldest acceptable `challenge_ts` (default: the provider's validity).
    pub max_token_age_secs: u64,
    /// `timeout-ms`: first-byte timeout asked of the host (default 800, inside the host's 1 s decision deadline).
    pub timeout_ms: u64,
}

impl CaptchaSettings {
    /// Reads the settings through `get`. Without a usable `provider` there is nothing to verify
    /// against: that is an error (the decision is `captcha-misconfigured`).
    pub fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<(Self, Vec<String>), String> {
        let provider_name = get("provider").ok_or("the `provider` setting is missing")?;
        let provider = Provider::parse(&provider_name)
            .ok_or_else(|| format!("unknown provider {provider_name:?}"))?;
        let mut warnings = Vec::new();
        let mut number = |key: &str| -> Option<f64> {
            let raw = get(key)?;
            match raw.trim().parse::<f64>() {
                Ok(value) if (0.0..=1.0).contains(&value) => Some(value),
                _ => {
                    warnings.push(format!("{key}={raw:?} is not a score between 0 and 1"));
                    None
                }
            }
        };
        let actions = ["register", "login", "password_reset"];
        let default_score_threshold = number("score-threshold").unwrap_or(0.5);
        let score_thresholds = actions
            .iter()
            .filter_map(|action| {
                number(&format!("score-threshold.{action}"))
                    .map(|value| (action.to_string(), value))
            })
            .collect();
        let default_challenge_threshold = number("challenge-threshold");
        let challenge_thresholds = actions
            .iter()
            .filter_map(|action| {
                number(&format!("challenge-threshold.{action}"))
                    .map(|value| (action.to_string(), value))
            })
            .collect();
        let integer = |key: &str, default: u64, warnings: &mut Vec<String>| match get(key) {
            None => default,
            Some(raw) => raw.trim().parse().unwrap_or_else(|_| {
                warnings.push(format!("{key}={raw:?} is not a number; using {default}"));
                default
            }),
        };
        let max_token_age_secs = integer(
            "max-token-age-s",
            provider.token_validity_secs(),
            &mut warnings,
        );
        let timeout_ms = integer("timeout-ms", 800, &mut warnings);
        let settings = Self {
            provider,
            base_url: get("base-url").map_or_else(
                || provider.default_base_url().to_owned(),
                |url| url.trim().to_owned(),
            ),
            secret_name: get("secret-name").unwrap_or_else(|| "captcha-secret".to_owned()),
            sitekey: get("sitekey").filter(|key| !key.is_empty()),
            expected_hostname: get("expected-hostname").filter(|host| !host.is_empty()),
            check_action: get("check-action").is_none_or(|value| value.trim() != "false"),
            score_thresholds,
            default_score_threshold,
            challenge_thresholds,
            default_challenge_threshold,
            max_token_age_secs,
            timeout_ms,
        };
        Ok((settings, warnings))
    }

    /// The score below which `action` is not allowed.
    pub fn score_threshold(&self, action: &str) -> f64 {
        self.score_thresholds
            .iter()
            .find(|(name, _)| name == action)
            .map_or(self.default_score_threshold, |(_, value)| *value)
    }

    /// The score from which `action` is challenged rather than denied, if configured.
    pub fn challenge_threshold(&self, action: &str) -> Option<f64> {
        self.challenge_thresholds
            .iter()
            .find(|(name, _)| name == action)
            .map(|(_, value)| *value)
            .or(self.default_challenge_threshold)
    }
}
