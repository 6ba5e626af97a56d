//! Secrets injected by the host: a plugin writes `{{secret:NAME}}` in a header value or the
//! body; the gateway substitutes the value only for destinations bound to `NAME`.
//! [`SecretStore::redactor`] finds the values again, in any common encoding, so that no
//! response, log line or error can carry one back to a plugin or a caller.

use crate::config::SecretSource;
use crate::redact::Redactor;
use arc_swap::ArcSwap;
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Weak},
    time::Duration,
};

const OPEN: &str = "{{secret:";
const CLOSE: &str = "}}";

/// The values in force, and a redactor for them and for the values they replaced (a request
/// in flight during a rotation may still see the old one reflected).
struct Snapshot {
    values: BTreeMap<String, Arc<str>>,
    retired: BTreeMap<String, Arc<str>>,
    redactor: Arc<Redactor>,
}

impl Snapshot {
    fn new(values: BTreeMap<String, Arc<str>>, retired: BTreeMap<String, Arc<str>>) -> Self {
        let redactor = Arc::new(Redactor::new(
            values
                .values()
                .chain(retired.values())
                .map(|value| &**value),
        ));
        Self {
            values,
            retired,
            redactor,
        }
    }
}

/// Secret values by name. Secrets read from files (how Kubernetes secret volumes, Vault Agent
/// and the Secrets Store CSI driver deliver them) are re-read by [`SecretStore::refresh`] and
/// swapped in atomically: a request sees the old value or the new one, never a half-written
/// file, and an empty or unreadable file keeps the old value.
pub struct SecretStore {
    sources: BTreeMap<String, SecretSource>,
    current: ArcSwap<Snapshot>,
    // One refresh at a time (the timer and a caller reading a value fresh can race): a
    // rotation is then logged and counted once, and no refresh undoes another's swap.
    refreshing: std::sync::Mutex<()>,
}

impl Default for SecretStore {
    fn default() -> Self {
        Self {
            sources: BTreeMap::new(),
            current: ArcSwap::from_pointee(Snapshot::new(BTreeMap::new(), BTreeMap::new())),
            refreshing: std::sync::Mutex::new(()),
        }
    }
}

impl std::fmt::Debug for SecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStore")
            .field("names", &self.sources.keys().collect::<Vec<_>>())
            // The values stay out of every Debug output.
            .finish_non_exhaustive()
    }
}

/// Why a secret could not be read. Every variant names the secret, never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable the secret comes from is not set.
    #[error("secret `{name}`: environment variable {variable} is not set")]
    EnvUnset {
        /// The secret's configured name.
        name: String,
        /// The variable it is read from.
        variable: String,
    },
    /// The file the secret comes from cannot be read.
    #[error("secret `{name}`: cannot read {}: {source}", path.display())]
    Unreadable {
        /// The secret's configured name.
        name: String,
        /// The file it is read from.
        path: PathBuf,
        /// Why reading failed.
        #[source]
        source: std::io::Error,
    },
    /// The source holds an empty value.
    #[error("secret `{name}` is empty")]
    Empty {
        /// The secret's configured name.
        name: String,
    },
}

/// Why a placeholder could not be substituted: the request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubstitutionError {
    /// `{{secret:` without its closing `}}`.
    #[error("unterminated secret placeholder")]
    Unterminated,
    /// The placeholder's name is not UTF-8.
    #[error("secret placeholder is not UTF-8")]
    NotUtf8,
    /// The secret exists perhaps, but not for this destination.
    #[error("secret `{name}` is not bound to this destination")]
    NotBound {
        /// The name in the placeholder.
        name: String,
    },
    /// No secret of that name is configured.
    #[error("secret `{name}` is not configured")]
    NotConfigured {
        /// The name in the placeholder.
        name: String,
    },
}

/// Reads one secret's value; an error names the secret (never its value).
fn read(name: &str, source: &SecretSource) -> Result<String, SecretError> {
    let value = match source {
        SecretSource::Env(variable) => {
            std::env::var(variable).map_err(|_| SecretError::EnvUnset {
                name: name.to_owned(),
                variable: variable.clone(),
            })?
        }
        SecretSource::File(path) => std::fs::read_to_string(path)
            .map_err(|source| SecretError::Unreadable {
                name: name.to_owned(),
                path: path.clone(),
                source,
            })?
            .trim_end_matches(['\r', '\n'])
            .to_owned(),
        SecretSource::Value(value) => value.clone(),
    };
    if value.is_empty() {
        return Err(SecretError::Empty {
            name: name.to_owned(),
        });
    }
    Ok(value)
}

impl SecretStore {
    /// Reads every configured secret. A missing variable or file is an error naming the secret
    /// (never its value).
    pub fn load(sources: &BTreeMap<String, SecretSource>) -> Result<Self, SecretError> {
        let mut values = BTreeMap::new();
        for (name, source) in sources {
            values.insert(name.clone(), Arc::from(read(name, source)?));
        }
        Ok(Self {
            sources: sources.clone(),
            current: ArcSwap::from_pointee(Snapshot::new(values, BTreeMap::new())),
            refreshing: std::sync::Mutex::new(()),
        })
    }

    /// The value of the secret called `name` now, for host code that authenticates itself
    /// (never for plugins: they only ever get placeholders substituted at the boundary). Read
    /// it for each use, not once, so a rotation takes effect from the next call.
    pub fn value(&self, name: &str) -> Option<Arc<str>> {
        self.current.load().values.get(name).cloned()
    }

    /// Re-reads the secrets that come from files and swaps in the changed ones. Returns the
    /// names that rotated. A file that is unreadable or empty (being rewritten) keeps the value
    /// in force and is tried again next time.
    pub fn refresh(&self) -> Vec<String> {
        let _one_at_a_time = self
            .refreshing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current.load_full();
        let mut values = current.values.clone();
        let mut retired = current.retired.clone();
        let mut rotated = Vec::new();
        for (name, source) in &self.sources {
            if !matches!(source, SecretSource::File(_)) {
                continue;
            }
            let Ok(fresh) = read(name, source) else {
                continue;
            };
            if values.get(name).is_some_and(|old| **old == *fresh) {
                continue;
            }
            if let Some(old) = values.insert(name.clone(), Arc::from(fresh)) {
                retired.insert(name.clone(), old);
            }
            rotated.push(name.clone());
        }
        if !rotated.is_empty() {
            self.current.store(Arc::new(Snapshot::new(values, retired)));
            for name in &rotated {
                tracing::info!(secret = %name, "secret rotated: the new value is used from the next request on");
                metrics::counter!("secret_rotations_total", "secret" => name.clone()).increment(1);
            }
        }
        rotated
    }

    /// The value of `name` as its source holds it now: re-reads the file secrets first (see
    /// [`SecretStore::refresh`]), for a rare call that must not wait for the next refresh
    /// tick (a registry pull). Blocking: small file reads.
    pub fn value_now(&self, name: &str) -> Option<Arc<str>> {
        self.refresh();
        self.value(name)
    }

    /// Whether a secret called `name` is configured.
    pub fn contains(&self, name: &str) -> bool {
        self.sources.contains_key(name)
    }

    /// Re-reads file secrets every `every` on the current tokio runtime, for as long as the
    /// store lives. Does nothing when no secret comes from a file or no runtime is running.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let has_files = self
            .sources
            .values()
            .any(|source| matches!(source, SecretSource::File(_)));
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !has_files {
            return;
        }
        let store: Weak<Self> = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(store) = store.upgrade() else { return };
                // File reads are small but blocking: off the async threads.
                let _ = tokio::task::spawn_blocking(move || store.refresh()).await;
            }
        });
    }

    /// Replaces every placeholder in `text`. Fails, naming the secret, when a placeholder names
    /// a secret that is unknown or not in `allowed` (the destination's bindings). Returns the
    /// values used, for scrubbing the response.
    pub fn substitute(
        &self,
        text: &[u8],
        allowed: &[String],
        used: &mut Vec<String>,
    ) -> Result<Option<Vec<u8>>, SubstitutionError> {
        if !contains(text, OPEN.as_bytes()) {
            return Ok(None);
        }
        let snapshot = self.current.load();
        let values = &snapshot.values;
        let mut out = Vec::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = find(rest, OPEN.as_bytes()) {
            out.extend_from_slice(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let end = find(after, CLOSE.as_bytes()).ok_or(SubstitutionError::Unterminated)?;
            let name =
                std::str::from_utf8(&after[..end]).map_err(|_| SubstitutionError::NotUtf8)?;
            if !allowed.iter().any(|bound| bound == name) {
                return Err(SubstitutionError::NotBound {
                    name: name.to_owned(),
                });
            }
            let value = values
                .get(name)
                .ok_or_else(|| SubstitutionError::NotConfigured {
                    name: name.to_owned(),
                })?;
            out.extend_from_slice(value.as_bytes());
            if !used.iter().any(|seen| **seen == **value) {
                used.push(value.to_string());
            }
            rest = &after[end + CLOSE.len()..];
        }
        out.extend_from_slice(rest);
        Ok(Some(out))
    }

    /// A redactor for every secret value in force (and each one's previous value), in all
    /// their common encodings.
    pub fn redactor(&self) -> Arc<Redactor> {
        self.current.load().redactor.clone()
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
        assert_eq!(
            error,
            SubstitutionError::NotBound {
                name: "captcha".to_owned()
            }
        );
        assert!(!error.to_string().contains("s3cr3t"));
        assert_eq!(
            store()
                .substitute(b"{{secret:other}}", &["other".to_owned()], &mut used)
                .unwrap_err(),
            SubstitutionError::NotConfigured {
                name: "other".to_owned()
            }
        );
        assert_eq!(store().substitute(b"plain", &[], &mut used).unwrap(), None);
    }

    #[test]
    fn the_redactor_knows_every_secret() {
        let redactor = store().redactor();
        assert_eq!(redactor.redact("you sent s3cr3t"), "you sent [redacted]");
    }

    #[test]
    fn a_rotated_file_is_swapped_in_whole_and_an_empty_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "first-value\n").unwrap();
        let store = SecretStore::load(&BTreeMap::from([(
            "key".to_owned(),
            SecretSource::File(path.clone()),
        )]))
        .unwrap();
        assert_eq!(store.value("key").as_deref(), Some("first-value"));
        assert!(store.refresh().is_empty(), "unchanged");

        std::fs::write(&path, "").unwrap();
        assert!(
            store.refresh().is_empty(),
            "a file being rewritten is not used"
        );
        assert_eq!(store.value("key").as_deref(), Some("first-value"));

        std::fs::write(&path, "second-value").unwrap();
        assert_eq!(store.refresh(), ["key"]);
        assert_eq!(store.value("key").as_deref(), Some("second-value"));
        let redactor = store.redactor();
        assert_eq!(
            redactor.redact("first-value second-value"),
            "[redacted] [redacted]",
            "the value it replaced is still scrubbed"
        );
    }

    #[test]
    fn missing_sources_are_named() {
        let sources = BTreeMap::from([(
            "x".to_owned(),
            SecretSource::Env("SURELY_NOT_SET_1234".to_owned()),
        )]);
        assert!(matches!(
            SecretStore::load(&sources).unwrap_err(),
            SecretError::EnvUnset { variable, .. } if variable == "SURELY_NOT_SET_1234"
        ));
    }
}
