//! The WASI 0.2 component: binds the siteverify call and [`crate::verdict`] to the `captcha`
//! world.

use crate::{
    form,
    provider::Provider,
    settings::CaptchaSettings,
    verdict::{self, Judgement, Outcome, SiteverifyAnswer, codes},
};
use guest_http::{Request, Target};

wit_bindgen::generate!({ world: "captcha", path: "../../wit", generate_all });

use exports::user_service::policy::captcha_verifier::{CaptchaInput, Guest};
use user_service::policy::{
    logging::{Level, log},
    settings,
    types::{Attribute, AttributeValue, Decision, Finding, PluginInfo, Verdict},
};

/// Providers' tokens are at most a few KiB (Turnstile: 2048 characters).
const MAX_TOKEN_BYTES: usize = 4096;
const MAX_ANSWER_BYTES: usize = 64 << 10;

struct Captcha;

impl Guest for Captcha {
    fn info() -> PluginInfo {
        PluginInfo {
            name: crate::PLUGIN_NAME.to_owned(),
            version: crate::PLUGIN_VERSION.to_owned(),
        }
    }

    fn verify(input: CaptchaInput) -> Decision {
        let (config, warnings) = match CaptchaSettings::from_lookup(settings::get) {
            Ok(loaded) => loaded,
            Err(error) => {
                log(Level::Error, &format!("captcha misconfigured: {error}"));
                return decision(
                    verdict::refuse(
                        codes::MISCONFIGURED,
                        "The CAPTCHA is misconfigured on our side; please try again later.",
                    ),
                    None,
                );
            }
        };
        for warning in warnings {
            log(Level::Warn, &format!("setting ignored: {warning}"));
        }
        let token = input.token.trim();
        if token.is_empty() {
            return decision(
                verdict::refuse(codes::MISSING, "Complete the CAPTCHA and try again."),
                Some(config.provider),
            );
        }
        if token.len() > MAX_TOKEN_BYTES {
            return decision(
                verdict::refuse(
                    codes::INVALID,
                    "The CAPTCHA could not be verified; complete it again.",
                ),
                Some(config.provider),
            );
        }
        decision(
            verify_with_provider(&config, token, &input),
            Some(config.provider),
        )
    }
}

fn verify_with_provider(config: &CaptchaSettings, token: &str, input: &CaptchaInput) -> Judgement {
    let unavailable = |why: &str| {
        log(Level::Warn, &format!("siteverify failed: {why}"));
        verdict::refuse(
            codes::UNAVAILABLE,
            "The CAPTCHA service is unavailable; please try again in a moment.",
        )
    };
    let target = match Target::join(&config.base_url, config.provider.siteverify_path()) {
        Ok(target) => target,
        Err(error) => return unavailable(&error),
    };
    let placeholder = format!("{{{{secret:{}}}}}", config.secret_name);
    let mut fields: Vec<(&str, &str, bool)> =
        vec![("secret", &placeholder, true), ("response", token, false)];
    if let Some(ip) = &input.remote_ip {
        fields.push(("remoteip", ip, false));
    }
    if let (Provider::Hcaptcha, Some(sitekey)) = (config.provider, &config.sitekey) {
        fields.push(("sitekey", sitekey, false));
    }
    let turnstile = config.provider == Provider::Turnstile;
    if turnstile {
        fields.push(("idempotency_key", &input.idempotency_key, false));
    }
    let body = form::build(&fields);
    let mut headers: Vec<(&str, &[u8])> =
        vec![("content-type", b"application/x-www-form-urlencoded")];
    if turnstile {
        // Tells the host's gateway this POST is safe to retry: the provider deduplicates by key.
        headers.push(("idempotency-key", input.idempotency_key.as_bytes()));
    }
    // Turnstile's `internal-error` is retryable with the same idempotency key; once is enough.
    let attempts = if turnstile { 2 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let request = Request {
            method: "POST",
            target: &target,
            headers: &headers,
            body: Some(body.as_bytes()),
            timeout_ms: Some(config.timeout_ms),
            max_body_bytes: MAX_ANSWER_BYTES,
            read_headers: false,
        };
        let response = match guest_http::send(request) {
            Ok(response) => response,
            Err(error) => return unavailable(&error),
        };
        if response.status != 200 {
            return unavailable(&format!("HTTP {}", response.status));
        }
        let answer: SiteverifyAnswer = match serde_json::from_slice(&response.body) {
            Ok(answer) => answer,
            Err(error) => return unavailable(&format!("unreadable answer: {error}")),
        };
        let retry = turnstile
            && !answer.success
            && answer
                .error_codes
                .iter()
                .any(|code| code == "internal-error");
        last = Some(answer);
        if !retry {
            break;
        }
    }
    let Some(answer) = last else {
        return unavailable("no answer");
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64);
    verdict::judge(&answer, &input.action, config, now)
}

fn decision(judgement: Judgement, provider: Option<Provider>) -> Decision {
    let mut attributes = Vec::new();
    if let Some(provider) = provider {
        attributes.push(Attribute {
            name: "provider".to_owned(),
            value: AttributeValue::Text(provider.name().to_owned()),
        });
    }
    if let Some(score) = judgement.score {
        attributes.push(Attribute {
            name: "score".to_owned(),
            value: AttributeValue::Number(score),
        });
    }
    if let Some(hostname) = judgement.hostname {
        attributes.push(Attribute {
            name: "hostname".to_owned(),
            value: AttributeValue::Text(hostname),
        });
    }
    Decision {
        verdict: match judgement.outcome {
            Outcome::Allow => Verdict::Allow,
            Outcome::Deny => Verdict::Deny,
            Outcome::Challenge => Verdict::Challenge,
        },
        findings: judgement
            .findings
            .into_iter()
            .map(|finding| Finding {
                code: finding.code.to_owned(),
                message: finding.message,
            })
            .collect(),
        attributes,
    }
}

export!(Captcha);
