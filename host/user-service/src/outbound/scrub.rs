//! What an outbound failure may say about itself in a log line or a stored error.
//!
//! Two rules, the same for every outbound client (events, notifications, configuration,
//! tokens) and for the `lastError` fields the admin endpoints serve:
//!
//! 1. **An upstream's response body never goes anywhere as it is.** Consumers often echo the
//!    request in a validation error, and the request of a reset notification carries a live
//!    single-use token. A non-2xx answer is described by [`describe_response`]: status and
//!    size, no excerpt.
//! 2. **Every other message is scrubbed** ([`Scrubber`]) of the values the service knows to be
//!    sensitive before it is logged or stored: an event's tokens and links, the access tokens,
//!    the client secret and the gateway's secrets. This is the second line: messages are built
//!    from statuses, names and sizes, so it should find nothing.

use http::StatusCode;
use std::sync::Arc;

/// What a sensitive value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Values shorter than this are not scrubbed: they would match ordinary text, and no token,
/// link or secret the service handles is that short.
const MIN_SECRET_LEN: usize = 6;

/// `"<service> answered <status> (<n>-byte body, not recorded)"`: everything a log line or a
/// stored error says about a non-2xx answer.
pub fn describe_response(service: &str, status: StatusCode, body_len: usize) -> String {
    format!("{service} answered {status} ({body_len}-byte body, not recorded)")
}

/// Replaces known sensitive values, as written and in the encodings a message could carry them
/// in (percent-encoded, JSON-escaped with or without `\/`), with [`REDACTED`].
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Every form of every value, longest first (so a link goes before the token inside it).
    needles: Arc<Vec<String>>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber")
            .field("values", &self.needles.len())
            .finish()
    }
}

impl Scrubber {
    /// A scrubber for `values` (short and empty ones are ignored).
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Self {
        Self::default().with(values)
    }

    /// This scrubber plus `values`.
    pub fn with<S: AsRef<str>>(self, values: impl IntoIterator<Item = S>) -> Self {
        let mut needles = Arc::unwrap_or_clone(self.needles);
        for value in values {
            let value = value.as_ref();
            if value.len() < MIN_SECRET_LEN {
                continue;
            }
            let percent: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
            let json = serde_json::to_string(value).unwrap_or_default();
            let json = json.trim_matches('"').to_owned();
            // Some encoders (PHP's, for one) also escape `/`.
            let json_slashes = json.replace('/', "\\/");
            for form in [value.to_owned(), percent, json, json_slashes] {
                if !needles.contains(&form) {
                    needles.push(form);
                }
            }
        }
        needles.sort_by_key(|needle| std::cmp::Reverse(needle.len()));
        Self {
            needles: Arc::new(needles),
        }
    }

    /// `text` with every known value replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for needle in self.needles.iter() {
            if text.contains(needle.as_str()) {
                text = text.replace(needle.as_str(), REDACTED);
            }
        }
        text
    }
}

/// The values of an event that must never appear in a log line or a stored error: every string
/// under `data` whose key names a token, a link, a secret or a password (the reset token and
/// link today; a verification token and link when there is one).
pub fn event_secrets(payload: &serde_json::Value) -> Vec<String> {
    const SENSITIVE_KEYS: [&str; 4] = ["token", "link", "secret", "password"];
    let mut found = Vec::new();
    let mut stack = vec![&payload["data"]];
    while let Some(value) = stack.pop() {
        match value {
            serde_json::Value::Object(fields) => {
                for (key, value) in fields {
                    let key = key.to_ascii_lowercase();
                    match value {
                        serde_json::Value::String(text)
                            if SENSITIVE_KEYS.iter().any(|word| key.contains(word)) =>
                        {
                            found.push(text.clone());
                        }
                        _ => stack.push(value),
                    }
                }
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_form_of_a_known_value_is_replaced() {
        let link = "https://app.example.org/reset?token=tok+en/123";
        let scrubber = Scrubber::new(["tok+en/123", link, "abc"]);
        let encoded: String = form_urlencoded::byte_serialize(b"tok+en/123").collect();
        let echoed = format!(
            r#"400 {{"resetLink":"{}","again":"{encoded}","short":"abc"}}"#,
            link.replace('/', "\\/")
        );
        let scrubbed = scrubber.scrub(&echoed);
        assert!(!scrubbed.contains("tok+en"), "{scrubbed}");
        assert!(!scrubbed.contains(&encoded), "{scrubbed}");
        assert!(scrubbed.contains("abc"), "short values are left alone");
        assert_eq!(scrubber.scrub(link), REDACTED, "the link goes whole");
    }

    #[test]
    fn an_events_tokens_and_links_are_found_wherever_they_are() {
        let payload = json!({
            "id": "e1",
            "data": {
                "email": "ann@example.org",
                "resetToken": "t0ken-value",
                "resetLink": "https://x/reset?token=t0ken-value",
                "nested": { "verificationLink": "https://x/verify?v=abc" },
                "userName": "Ann",
            }
        });
        let mut found = event_secrets(&payload);
        found.sort();
        assert_eq!(
            found,
            [
                "https://x/reset?token=t0ken-value",
                "https://x/verify?v=abc",
                "t0ken-value"
            ]
        );
    }

    #[test]
    fn a_response_is_described_by_status_and_size_only() {
        assert_eq!(
            describe_response("notification-service", StatusCode::BAD_REQUEST, 312),
            "notification-service answered 400 Bad Request (312-byte body, not recorded)"
        );
    }
}
