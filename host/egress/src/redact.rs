//! Finding a secret in any of the forms an upstream (or a plugin) could hand it back in.
//!
//! A value is looked for as written and in its common encodings: base64 and base64url (at every
//! byte alignment, so a value inside a longer encoded string such as `Basic base64(user:pw)` is
//! found too), percent-encoding, hex (either case) and JSON string escaping. Every match is
//! replaced by [`REDACTED`].

use aho_corasick::{AhoCorasick, MatchKind};
use base64::{
    Engine,
    alphabet::{STANDARD, URL_SAFE},
    engine::{GeneralPurpose, general_purpose::NO_PAD},
};
use std::fmt::Write as _;

/// What a secret is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Shortest run of encoded characters searched for: shorter runs would match ordinary text.
const MIN_NEEDLE_BYTES: usize = 4;

/// A matcher for every encoding of a set of secret values.
#[derive(Clone)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
    /// Unique per set of values (0 when there are none), so a response can remember that this
    /// redactor found it clean ([`crate::cache::ScanMemo`]).
    id: u64,
}

/// The next [`Redactor::id`]; never reused, so a remembered id can't name another redactor.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("active", &self.matcher.is_some())
            .field("id", &self.id)
            .finish()
    }
}

impl Redactor {
    /// A redactor that finds nothing.
    pub fn none() -> Self {
        Self {
            matcher: None,
            id: 0,
        }
    }

    /// A redactor for `values` (empty values are ignored).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles: Vec<Vec<u8>> = Vec::new();
        for value in values {
            for needle in encodings(value.as_bytes()) {
                if needle.len() >= MIN_NEEDLE_BYTES.min(value.len()).max(1)
                    && !needles.contains(&needle)
                {
                    needles.push(needle);
                }
            }
        }
        if needles.is_empty() {
            return Self::none();
        }
        // Leftmost-longest: of overlapping forms, the longest is replaced whole.
        let matcher = AhoCorasick::builder()
            .ascii_case_insensitive(false)
            .match_kind(MatchKind::LeftmostLongest)
            .build(&needles)
            .ok();
        Self {
            matcher,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// This set of values' id: equal ids, equal matchers (0 when there is nothing to find).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// True when `bytes` holds a secret in any known form.
    pub fn finds(&self, bytes: &[u8]) -> bool {
        self.matcher
            .as_ref()
            .is_some_and(|matcher| matcher.is_match(bytes))
    }

    /// `bytes` with every form of every secret replaced; `None` when there was nothing to hide.
    pub fn redact_bytes(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let matcher = self.matcher.as_ref()?;
        if !matcher.is_match(bytes) {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len());
        matcher.replace_all_with_bytes(bytes, &mut out, |_, _, out| {
            out.extend_from_slice(REDACTED.as_bytes());
            true
        });
        Some(out)
    }

    /// `text` with every form of every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        match self.redact_bytes(text.as_bytes()) {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => text.to_owned(),
        }
    }
}

/// The forms a value is searched in.
fn encodings(value: &[u8]) -> Vec<Vec<u8>> {
    let mut forms = vec![value.to_vec()];
    for alphabet in [&STANDARD, &URL_SAFE] {
        let engine = GeneralPurpose::new(alphabet, NO_PAD);
        forms.extend(base64_runs(&engine, value));
    }
    forms.push(percent_encoded(value, false).into_bytes());
    forms.push(percent_encoded(value, true).into_bytes());
    forms.push(hex::encode(value).into_bytes());
    forms.push(hex::encode_upper(value).into_bytes());
    if let Ok(text) = std::str::from_utf8(value)
        && let Ok(json) = serde_json::to_string(text)
    {
        forms.push(json.trim_matches('"').as_bytes().to_vec());
        // Some encoders also escape `/`.
        forms.push(json.trim_matches('"').replace('/', "\\/").into_bytes());
    }
    forms
}

/// The base64 characters that depend only on `value`'s bytes, for each of the three byte
/// alignments the value can have inside a longer encoded string.
fn base64_runs(engine: &GeneralPurpose, value: &[u8]) -> Vec<Vec<u8>> {
    let mut runs = Vec::new();
    for offset in 0..3usize {
        let mut padded = vec![0u8; offset];
        padded.extend_from_slice(value);
        let encoded = engine.encode(&padded);
        // Character i covers bits [6i, 6i + 6); the value's bits are [8 offset, 8 (offset + n)).
        let first = (8 * offset).div_ceil(6);
        let end = (8 * (offset + value.len())) / 6;
        if end > first {
            runs.push(encoded.as_bytes()[first..end].to_vec());
        }
    }
    runs
}

/// Every byte but RFC 3986's unreserved characters percent-encoded.
fn percent_encoded(value: &[u8], upper: bool) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &byte in value {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else if upper {
            let _ = write!(out, "%{byte:02X}");
        } else {
            let _ = write!(out, "%{byte:02x}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD as B64URL};

    const SECRET: &str = "s3cr3t/v@lue+with=odd&chars";

    fn redactor() -> Redactor {
        Redactor::new([SECRET])
    }

    #[test]
    fn finds_every_common_encoding() {
        let redactor = redactor();
        let forms = [
            SECRET.to_owned(),
            B64.encode(SECRET),
            B64URL.encode(SECRET),
            B64.encode(format!("user:{SECRET}")),
            B64.encode(format!("xy:{SECRET}:z")),
            B64URL.encode(format!("ab{SECRET}")),
            percent_encoded(SECRET.as_bytes(), false),
            percent_encoded(SECRET.as_bytes(), true),
            hex::encode(SECRET),
            hex::encode_upper(SECRET),
            serde_json::to_string(SECRET).unwrap(),
        ];
        for form in forms {
            let text = format!("before {form} after");
            assert!(redactor.finds(text.as_bytes()), "not found: {form}");
            let redacted = redactor.redact(&text);
            assert!(redacted.contains(REDACTED), "{redacted}");
            assert!(!redactor.finds(redacted.as_bytes()), "{redacted}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let text = "nothing to see here: 0123456789abcdef";
        assert!(!redactor().finds(text.as_bytes()));
        assert_eq!(redactor().redact(text), text);
        assert_eq!(Redactor::none().redact(SECRET), SECRET);
    }
}
