//! Simulators of the three CAPTCHA vendors' `siteverify` endpoints (Google reCAPTCHA,
//! hCaptcha, Cloudflare Turnstile) on 127.0.0.1, built on [`crate::upstream::TestServer`].
//!
//! Each one takes a `POST` with an `application/x-www-form-urlencoded` body (`secret`,
//! `response`, optional `remoteip`; hCaptcha also `sitekey`, Turnstile also
//! `idempotency_key`) and answers `200` with the vendor's JSON verdict: `success`,
//! `error-codes` and, on success, `challenge_ts`, `hostname` and (when the token has them)
//! `score` / `action`; Turnstile always reports `action` and `cdata` (empty strings when unset,
//! like the real service).
//!
//! Secrets it understands:
//! - the vendors' documented test secrets ([`RECAPTCHA_TEST_SECRET`], [`HCAPTCHA_TEST_SECRET`],
//!   [`TURNSTILE_PASS_SECRET`], [`TURNSTILE_FAIL_SECRET`], [`TURNSTILE_SPENT_SECRET`]), which
//!   behave as documented and never remember tokens;
//! - [`REAL_SECRET`], which only accepts tokens registered with
//!   [`CaptchaServer::issue_token`], each exactly once (replays fail with the vendor's
//!   "already used" code), except that Turnstile answers a retry carrying the same
//!   `idempotency_key` as the first successful verification with that same answer again.
//!
//! Any other secret gets `invalid-input-secret`. Faults ([`Mode`]) are switchable at run time.
//! Tokens are judged (and consumed) when the request arrives, before any [`Mode::Slow`] delay,
//! so a client that times out and retries without an idempotency key sees a spent token,
//! exactly as against the real services.
//!
//! Not simulated: token expiry, `sitekey`/secret mismatch, `remoteip` checks, GET/query-string
//! requests, the `metadata`/`credit` extras.

use crate::upstream::{RecordedRequest, Reply, TestServer};
use serde_json::{Value, json};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};
use user_service::outbox::cloudevents::rfc3339;

/// The "real" secret the simulators accept besides the vendors' test secrets.
pub const REAL_SECRET: &str = "real-secret-for-tests";

/// reCAPTCHA's documented v2 test secret: accepts any token.
pub const RECAPTCHA_TEST_SECRET: &str = "6LeIxAcTAAAAAGG-vFI1TH6WYAz1RrTUFZ1mG3rW";
/// Hostname reCAPTCHA reports for its test secret.
pub const RECAPTCHA_TEST_HOSTNAME: &str = "testkey.google.com";

/// hCaptcha's documented test secret: accepts exactly [`HCAPTCHA_TEST_TOKEN`].
pub const HCAPTCHA_TEST_SECRET: &str = "0x0000000000000000000000000000000000000000";
/// The dummy token hCaptcha's test site key hands out.
pub const HCAPTCHA_TEST_TOKEN: &str = "10000000-aaaa-bbbb-cccc-000000000001";
/// Hostname hCaptcha reports for its dummy token.
pub const HCAPTCHA_TEST_HOSTNAME: &str = "dummy-key-pass";

/// Turnstile's test secret that always passes.
pub const TURNSTILE_PASS_SECRET: &str = "1x0000000000000000000000000000000AA";
/// Turnstile's test secret that always fails (`invalid-input-response`).
pub const TURNSTILE_FAIL_SECRET: &str = "2x0000000000000000000000000000000AA";
/// Turnstile's test secret that reports a spent token (`timeout-or-duplicate`).
pub const TURNSTILE_SPENT_SECRET: &str = "3x0000000000000000000000000000000AA";
/// Hostname Turnstile reports for its passing test secret.
pub const TURNSTILE_TEST_HOSTNAME: &str = "example.com";

/// Which vendor a [`CaptchaServer`] imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Vendor {
    /// Google reCAPTCHA.
    Recaptcha,
    /// hCaptcha.
    Hcaptcha,
    /// Cloudflare Turnstile.
    Turnstile,
}

impl Vendor {
    /// Path of the siteverify endpoint: "/recaptcha/api/siteverify", "/siteverify",
    /// "/turnstile/v0/siteverify".
    pub fn path(self) -> &'static str {
        match self {
            Self::Recaptcha => "/recaptcha/api/siteverify",
            Self::Hcaptcha => "/siteverify",
            Self::Turnstile => "/turnstile/v0/siteverify",
        }
    }

    /// The error code for a token that was already verified.
    fn already_used(self) -> &'static str {
        match self {
            Self::Recaptcha | Self::Turnstile => "timeout-or-duplicate",
            Self::Hcaptcha => "invalid-or-already-seen-response",
        }
    }
}

/// How the server behaves right now.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Answers like the real service.
    Healthy,
    /// Answers with this status and an empty body.
    Status(u16),
    /// Answers normally after this delay (the token is judged on arrival).
    Slow(Duration),
    /// A 200 whose body is `<html>oops</html>`.
    Garbage,
}

/// What siteverify reports for a token issued with [`CaptchaServer::issue_token`].
#[derive(Clone, Debug)]
pub struct TokenDetails {
    /// The site the challenge was solved on.
    pub hostname: String,
    /// The action name (reCAPTCHA v3, Turnstile; reported by any vendor when set).
    pub action: Option<String>,
    /// The risk score, 0.0 to 1.0 (reCAPTCHA v3, hCaptcha Enterprise).
    pub score: Option<f64>,
    /// When the challenge was solved, RFC 3339, e.g. "2026-11-28T12:00:00Z".
    pub challenge_ts: String,
    /// Customer data (Turnstile only).
    pub cdata: Option<String>,
}

/// A registered token and, once verified, what happened the first time.
#[derive(Debug)]
struct Token {
    details: TokenDetails,
    /// Set by the first successful verification: its idempotency key (non-empty, Turnstile
    /// only) and the answer it got.
    verified: Option<(Option<String>, Value)>,
}

/// A siteverify endpoint of one vendor, with switchable faults.
pub struct CaptchaServer {
    /// The listening server.
    pub server: TestServer,
    /// Which vendor it plays.
    pub vendor: Vendor,
    mode: Arc<Mutex<Mode>>,
    tokens: Arc<Mutex<HashMap<String, Token>>>,
}

impl CaptchaServer {
    /// Starts a healthy simulator of `vendor` with no registered tokens.
    pub async fn start(vendor: Vendor) -> Self {
        let mode = Arc::new(Mutex::new(Mode::Healthy));
        let tokens: Arc<Mutex<HashMap<String, Token>>> = Arc::new(Mutex::new(HashMap::new()));
        let (current, registered) = (mode.clone(), tokens.clone());
        let server = TestServer::start(move |request| {
            let mode = current.lock().unwrap().clone();
            respond(vendor, request, &mode, &registered)
        })
        .await;
        Self {
            server,
            vendor,
            mode,
            tokens,
        }
    }

    /// Switches behaviour.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// Base URL, e.g. "http://127.0.0.1:1234" (the plugin appends `vendor.path()`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Registers a token the real secret accepts, with what siteverify will report for it.
    /// Registering it again replaces the details and makes it unused again.
    pub fn issue_token(&self, token: &str, details: TokenDetails) {
        self.tokens.lock().unwrap().insert(
            token.to_owned(),
            Token {
                details,
                verified: None,
            },
        );
    }

    /// Every form field of every request received, decoded
    /// (`application/x-www-form-urlencoded`), in order.
    pub fn forms(&self) -> Vec<Vec<(String, String)>> {
        self.server
            .requests()
            .iter()
            .map(|request| decode_form(&request.body))
            .collect()
    }
}

/// Decodes an `application/x-www-form-urlencoded` body: `&`-separated `name=value` pairs,
/// `+` is a space, `%XX` a byte (a malformed escape is kept as it is), invalid UTF-8 is
/// replaced. Empty pairs are skipped; a pair without `=` has an empty value.
pub fn decode_form(body: &[u8]) -> Vec<(String, String)> {
    body.split(|&byte| byte == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&byte| byte == b'=') {
            Some(at) => (
                decode_component(&pair[..at]),
                decode_component(&pair[at + 1..]),
            ),
            None => (decode_component(pair), String::new()),
        })
        .collect()
}

fn decode_component(text: &[u8]) -> String {
    let mut bytes = Vec::with_capacity(text.len());
    let mut index = 0;
    while index < text.len() {
        match text[index] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let high = text.get(index + 1).and_then(|&byte| hex_value(byte));
                let low = text.get(index + 2).and_then(|&byte| hex_value(byte));
                if let (Some(high), Some(low)) = (high, low) {
                    bytes.push(high << 4 | low);
                    index += 2;
                } else {
                    bytes.push(b'%');
                }
            }
            byte => bytes.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// The current time as RFC 3339 in UTC with whole seconds, e.g. "2026-11-28T12:00:00Z".
pub fn rfc3339_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    rfc3339(i64::try_from(seconds).unwrap_or(i64::MAX))
}

fn respond(
    vendor: Vendor,
    request: &RecordedRequest,
    mode: &Mode,
    tokens: &Mutex<HashMap<String, Token>>,
) -> Reply {
    match mode {
        Mode::Healthy => siteverify(vendor, request, tokens),
        Mode::Slow(delay) => Reply::After(*delay, Box::new(siteverify(vendor, request, tokens))),
        Mode::Status(status) => Reply::status(*status),
        Mode::Garbage => Reply::Respond {
            status: 200,
            headers: vec![("content-type".into(), "text/html".into())],
            body: b"<html>oops</html>".to_vec(),
        },
    }
}

fn json_reply(status: u16, body: &Value) -> Reply {
    Reply::Respond {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// A failed verdict with these error codes.
fn failure(codes: &[&str]) -> Value {
    json!({ "success": false, "error-codes": codes })
}

/// A successful verdict reporting `hostname`, `challenge_ts` and, as the vendor does,
/// `score`, `action` and `cdata`.
fn success(
    vendor: Vendor,
    hostname: &str,
    challenge_ts: &str,
    details: Option<&TokenDetails>,
) -> Value {
    let mut answer = json!({
        "success": true,
        "error-codes": [],
        "challenge_ts": challenge_ts,
        "hostname": hostname,
    });
    let action = details.and_then(|details| details.action.clone());
    let score = details.and_then(|details| details.score);
    if let Some(score) = score {
        answer["score"] = json!(score);
    }
    if vendor == Vendor::Turnstile {
        let cdata = details.and_then(|details| details.cdata.clone());
        answer["action"] = json!(action.unwrap_or_default());
        answer["cdata"] = json!(cdata.unwrap_or_default());
    } else if let Some(action) = action {
        answer["action"] = json!(action);
    }
    answer
}

/// The endpoint itself: routing, then the verdict.
fn siteverify(
    vendor: Vendor,
    request: &RecordedRequest,
    tokens: &Mutex<HashMap<String, Token>>,
) -> Reply {
    let path = request
        .path
        .split_once('?')
        .map_or(request.path.as_str(), |(path, _)| path);
    if path != vendor.path() {
        return json_reply(404, &json!({ "error": "not found" }));
    }
    if request.method != "POST" {
        return Reply::Respond {
            status: 405,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("allow".into(), "POST".into()),
            ],
            body: json!({ "error": "method not allowed" })
                .to_string()
                .into_bytes(),
        };
    }
    let form = decode_form(&request.body);
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    };
    json_reply(
        200,
        &verdict(
            vendor,
            field("secret"),
            field("response"),
            field("idempotency_key"),
            tokens,
        ),
    )
}

/// The JSON verdict for one verification, following the vendors' rules.
fn verdict(
    vendor: Vendor,
    secret: Option<&str>,
    response: Option<&str>,
    idempotency_key: Option<&str>,
    tokens: &Mutex<HashMap<String, Token>>,
) -> Value {
    let (secret, response) = match (secret, response) {
        (None, None) => return failure(&["missing-input-secret", "missing-input-response"]),
        (None, Some(_)) => return failure(&["missing-input-secret"]),
        (Some(_), None) => return failure(&["missing-input-response"]),
        (Some(secret), Some(response)) => (secret, response),
    };
    match (vendor, secret) {
        (Vendor::Turnstile, TURNSTILE_PASS_SECRET) => {
            let registered = tokens
                .lock()
                .unwrap()
                .get(response)
                .map(|token| token.details.clone());
            success(
                vendor,
                TURNSTILE_TEST_HOSTNAME,
                &rfc3339_now(),
                registered.as_ref(),
            )
        }
        (Vendor::Turnstile, TURNSTILE_FAIL_SECRET) => failure(&["invalid-input-response"]),
        (Vendor::Turnstile, TURNSTILE_SPENT_SECRET) => failure(&["timeout-or-duplicate"]),
        (Vendor::Hcaptcha, HCAPTCHA_TEST_SECRET) => {
            if response == HCAPTCHA_TEST_TOKEN {
                success(vendor, HCAPTCHA_TEST_HOSTNAME, &rfc3339_now(), None)
            } else {
                failure(&["invalid-input-response"])
            }
        }
        (Vendor::Recaptcha, RECAPTCHA_TEST_SECRET) => {
            success(vendor, RECAPTCHA_TEST_HOSTNAME, &rfc3339_now(), None)
        }
        (_, REAL_SECRET) => {
            let mut tokens = tokens.lock().unwrap();
            let Some(token) = tokens.get_mut(response) else {
                return failure(&["invalid-input-response"]);
            };
            match &token.verified {
                None => {
                    let answer = success(
                        vendor,
                        &token.details.hostname,
                        &token.details.challenge_ts,
                        Some(&token.details),
                    );
                    let key = idempotency_key
                        .filter(|_| vendor == Vendor::Turnstile)
                        .map(str::to_owned);
                    token.verified = Some((key, answer.clone()));
                    answer
                }
                Some((Some(first_key), answer))
                    if vendor == Vendor::Turnstile && idempotency_key == Some(first_key) =>
                {
                    answer.clone()
                }
                Some(_) => failure(&[vendor.already_used()]),
            }
        }
        _ => failure(&["invalid-input-secret"]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(form: &[(&str, &str)]) -> Vec<(String, String)> {
        form.iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn decodes_plus_percent_and_odd_pairs() {
        assert_eq!(
            decode_form(b"secret=a%2Bb+c&response=x%3D%26y&&remoteip=%3A%3A1&flag&bad=%zz%4"),
            pairs(&[
                ("secret", "a+b c"),
                ("response", "x=&y"),
                ("remoteip", "::1"),
                ("flag", ""),
                ("bad", "%zz%4"),
            ])
        );
        assert_eq!(decode_form(b""), pairs(&[]));
        assert_eq!(
            decode_form(b"name=%C3%A9t%C3%A9"),
            pairs(&[("name", "été")])
        );
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_867_200), "2026-11-28T12:00:00Z");
        assert_eq!(rfc3339_now().len(), 20);
    }

    fn details() -> TokenDetails {
        TokenDetails {
            hostname: "login.example.org".into(),
            action: Some("login".into()),
            score: Some(0.9),
            challenge_ts: "2026-11-28T12:00:00Z".into(),
            cdata: Some("session-1".into()),
        }
    }

    fn registry(token: &str) -> Mutex<HashMap<String, Token>> {
        let mut tokens = HashMap::new();
        tokens.insert(
            token.to_owned(),
            Token {
                details: details(),
                verified: None,
            },
        );
        Mutex::new(tokens)
    }

    fn codes(answer: &Value) -> Vec<&str> {
        answer["error-codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|code| code.as_str().unwrap())
            .collect()
    }

    #[test]
    fn real_secret_tokens_are_single_use() {
        for vendor in [Vendor::Recaptcha, Vendor::Hcaptcha, Vendor::Turnstile] {
            let tokens = registry("t");
            let first = verdict(vendor, Some(REAL_SECRET), Some("t"), None, &tokens);
            assert_eq!(first["success"], true);
            assert_eq!(first["hostname"], "login.example.org");
            assert_eq!(first["challenge_ts"], "2026-11-28T12:00:00Z");
            assert_eq!(first["score"], 0.9);
            assert_eq!(first["action"], "login");
            assert_eq!(first.get("cdata").is_some(), vendor == Vendor::Turnstile);
            let again = verdict(vendor, Some(REAL_SECRET), Some("t"), None, &tokens);
            assert_eq!(again["success"], false);
            assert_eq!(codes(&again), [vendor.already_used()]);
            let unknown = verdict(vendor, Some(REAL_SECRET), Some("u"), None, &tokens);
            assert_eq!(codes(&unknown), ["invalid-input-response"]);
            let wrong = verdict(vendor, Some("nope"), Some("t"), None, &tokens);
            assert_eq!(codes(&wrong), ["invalid-input-secret"]);
        }
    }

    #[test]
    fn turnstile_idempotency_key_repeats_the_first_answer() {
        let tokens = registry("t");
        let key = Some("5f1c4e1a-0000-4000-8000-000000000001");
        let first = verdict(
            Vendor::Turnstile,
            Some(REAL_SECRET),
            Some("t"),
            key,
            &tokens,
        );
        let retry = verdict(
            Vendor::Turnstile,
            Some(REAL_SECRET),
            Some("t"),
            key,
            &tokens,
        );
        assert_eq!(first, retry);
        let other = Some("5f1c4e1a-0000-4000-8000-000000000002");
        let replay = verdict(
            Vendor::Turnstile,
            Some(REAL_SECRET),
            Some("t"),
            other,
            &tokens,
        );
        assert_eq!(codes(&replay), ["timeout-or-duplicate"]);
        let bare = verdict(
            Vendor::Turnstile,
            Some(REAL_SECRET),
            Some("t"),
            None,
            &tokens,
        );
        assert_eq!(codes(&bare), ["timeout-or-duplicate"]);
        // Other vendors ignore the key.
        let tokens = registry("t");
        verdict(
            Vendor::Recaptcha,
            Some(REAL_SECRET),
            Some("t"),
            key,
            &tokens,
        );
        let replay = verdict(
            Vendor::Recaptcha,
            Some(REAL_SECRET),
            Some("t"),
            key,
            &tokens,
        );
        assert_eq!(codes(&replay), ["timeout-or-duplicate"]);
    }

    #[test]
    fn test_secrets_behave_as_documented() {
        let tokens = registry("t");
        let pass = verdict(
            Vendor::Turnstile,
            Some(TURNSTILE_PASS_SECRET),
            Some("x"),
            None,
            &tokens,
        );
        assert_eq!(pass["success"], true);
        assert_eq!(pass["hostname"], "example.com");
        assert_eq!(pass["action"], "");
        let pass = verdict(
            Vendor::Turnstile,
            Some(TURNSTILE_PASS_SECRET),
            Some("t"),
            None,
            &tokens,
        );
        assert_eq!(pass["action"], "login");
        let fail = verdict(
            Vendor::Turnstile,
            Some(TURNSTILE_FAIL_SECRET),
            Some("t"),
            None,
            &tokens,
        );
        assert_eq!(codes(&fail), ["invalid-input-response"]);
        let spent = verdict(
            Vendor::Turnstile,
            Some(TURNSTILE_SPENT_SECRET),
            Some("t"),
            None,
            &tokens,
        );
        assert_eq!(codes(&spent), ["timeout-or-duplicate"]);
        let dummy = verdict(
            Vendor::Hcaptcha,
            Some(HCAPTCHA_TEST_SECRET),
            Some(HCAPTCHA_TEST_TOKEN),
            None,
            &tokens,
        );
        assert_eq!(dummy["hostname"], "dummy-key-pass");
        let other = verdict(
            Vendor::Hcaptcha,
            Some(HCAPTCHA_TEST_SECRET),
            Some("t"),
            None,
            &tokens,
        );
        assert_eq!(codes(&other), ["invalid-input-response"]);
        let google = verdict(
            Vendor::Recaptcha,
            Some(RECAPTCHA_TEST_SECRET),
            Some("x"),
            None,
            &tokens,
        );
        assert_eq!(google["hostname"], "testkey.google.com");
        assert!(google.get("score").is_none());
        // A vendor's test secret means nothing to another vendor.
        let foreign = verdict(
            Vendor::Recaptcha,
            Some(TURNSTILE_PASS_SECRET),
            Some("x"),
            None,
            &tokens,
        );
        assert_eq!(codes(&foreign), ["invalid-input-secret"]);
        // Test secrets never consume registered tokens.
        let real = verdict(
            Vendor::Turnstile,
            Some(REAL_SECRET),
            Some("t"),
            None,
            &tokens,
        );
        assert_eq!(real["success"], true);
    }

    #[test]
    fn missing_inputs() {
        let tokens = registry("t");
        let none = verdict(Vendor::Hcaptcha, None, None, None, &tokens);
        assert_eq!(
            codes(&none),
            ["missing-input-secret", "missing-input-response"]
        );
        let secret = verdict(Vendor::Hcaptcha, None, Some("t"), None, &tokens);
        assert_eq!(codes(&secret), ["missing-input-secret"]);
        let response = verdict(Vendor::Hcaptcha, Some("bogus"), None, None, &tokens);
        assert_eq!(codes(&response), ["missing-input-response"]);
    }
}
