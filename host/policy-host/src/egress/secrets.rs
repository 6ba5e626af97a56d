//! Secrets injected by the host: a plugin writes `{{secret:NAME}}` in a header value or the
//! body; the gateway substitutes the value only for destinations bound to `NAME`.
//! [`SecretStore::redactor`] finds the values again, in any common encoding, so that no
//! response, log line or error can carry one back to a plugin or a caller.

use super::config::SecretSource;
use super::redact::Redactor;
use std::collections::BTreeMap;

const OPEN: &str = "{{secret:";
const CLOSE: &str = "}}";

/// Secret values by name, loaded once.
#[derive(Default)]
pub struct SecretStore {
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretStore {
    /// Reads every configured secret. A missing variable or file is an error naming the secret
    /// (never its value).
    pub fn load(sources: &BTreeMap<String, SecretSource>) -> Result<Self, String> {
        let mut values = BTreeMap::new();
        for (name, source) in sources {
            let value = match source {
                SecretSource::Env(variable) => std::env::var(variable).map_err(|_| {
                    format!("secret `{name}`: environment variable {variable} is not set")
                })?,
                SecretSource::File(path) => std::fs::read_to_string(path)
                    .map_err(|error| {
                        format!("secret `{name}`: cannot read {}: {error}", path.display())
                    })?
                    .trim_end_matches(['\r', '\n'])
                    .to_owned(),
                SecretSource::Value(value) => value.clone(),
            };
            if value.is_empty() {
                return Err(format!("secret `{name}` is empty"));
            }
            values.insert(name.clone(), value);
        }
        Ok(Self { values })
    }

    /// The value of the secret called `name`, for host code that authenticates itself (never
    /// for plugins: they only ever get placeholders substituted at the boundary).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Replaces every placeholder in `text`. Fails, naming the secret, when a placeholder names
    /// a secret that is unknown or not in `allowed` (the destination's bindings). Returns the
    /// values used, for scrubbing the response.
    pub fn substitute(
        &self,
        text: &[u8],
        allowed: &[String],
        used: &mut Vec<String>,
    ) -> Result<Option<Vec<u8>>, String> {
        if !contains(text, OPEN.as_bytes()) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = find(rest, OPEN.as_bytes()) {
            out.extend_from_slice(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let end = find(after, CLOSE.as_bytes()).ok_or("unterminated secret placeholder")?;
            let name = std::str::from_utf8(&after[..end])
                .map_err(|_| "secret placeholder is not UTF-8")?;
            if !allowed.iter().any(|bound| bound == name) {
                return Err(format!("secret `{name}` is not bound to this destination"));
            }
            let value = self
                .values
                .get(name)
                .ok_or_else(|| format!("secret `{name}` is not configured"))?;
            out.extend_from_slice(value.as_bytes());
            if !used.contains(value) {
                used.push(value.clone());
            }
            rest = &after[end + CLOSE.len()..];
        }
        out.extend_from_slice(rest);
        Ok(Some(out))
    }

    /// A redactor for every configured secret value, in all its common encodings.
    pub fn redactor(&self) -> Redactor {
        Redactor::new(self.values.values().map(String::as_str))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> SecretStore {
        let sources = BTreeMap::from([(
            "captcha".to_owned(),
            SecretSource::Value("s3cr3t".to_owned()),
        )]);
        SecretStore::load(&sources).unwrap()
    }

    #[test]
    fn substitutes_only_bound_secrets() {
        let mut used = Vec::new();
        let body = b"secret={{secret:captcha}}&response=abc";
        let out = store()
            .substitute(body, &["captcha".to_owned()], &mut used)
            .unwrap()
            .unwrap();
        assert_eq!(out, b"secret=s3cr3t&response=abc");
        assert_eq!(used, ["s3cr3t"]);
        let error = store().substitute(body, &[], &mut used).unwrap_err();
        assert!(error.contains("not bound") && !error.contains("s3cr3t"));
        assert!(
            store()
                .substitute(b"{{secret:other}}", &["other".to_owned()], &mut used)
                .unwrap_err()
                .contains("not configured")
        );
        assert_eq!(store().substitute(b"plain", &[], &mut used).unwrap(), None);
    }

    #[test]
    fn the_redactor_knows_every_secret() {
        let redactor = store().redactor();
        assert_eq!(redactor.redact("you sent s3cr3t"), "you sent [redacted]");
    }

    #[test]
    fn missing_sources_are_named() {
        let sources = BTreeMap::from([(
            "x".to_owned(),
            SecretSource::Env("SURELY_NOT_SET_1234".to_owned()),
        )]);
        assert!(
            SecretStore::load(&sources)
                .unwrap_err()
                .contains("SURELY_NOT_SET_1234")
        );
    }
}
