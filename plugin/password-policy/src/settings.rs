//! The plugin's settings, read through the host's `settings` interface.

/// What the policy is configured to enforce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    /// Minimum length in code points after NFKC, for single-factor accounts (`min-length`).
    pub min_length: usize,
    /// Minimum length when the account has a second factor (`min-length-with-mfa`).
    pub min_length_with_mfa: usize,
    /// Maximum length in code points (`max-length`); never below [`NIST_MIN_MAXIMUM`].
    pub max_length: usize,
    /// This service's name, treated as a context word (`service-name`).
    pub service_name: Option<String>,
    /// Extra words that may not be the password (`blocked-words`, comma-separated).
    pub blocked_words: Vec<String>,
}

/// NIST SP 800-63B: verifiers must allow passwords of at least 64 characters.
pub const NIST_MIN_MAXIMUM: usize = 64;
/// NIST SP 800-63B: at least 8 characters whatever the configuration says.
pub const NIST_ABSOLUTE_MINIMUM: usize = 8;

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            min_length: 15,
            min_length_with_mfa: 8,
            max_length: NIST_MIN_MAXIMUM,
            service_name: None,
            blocked_words: Vec::new(),
        }
    }
}

impl PolicySettings {
    /// Reads the settings through `get` (the host's `settings.get`). A value that cannot be
    /// used keeps the default (or is raised to the NIST floor) and yields a warning that the
    /// plugin logs; a policy never becomes weaker than NIST because of a typo.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
        let mut settings = Self::default();
        let mut warnings = Vec::new();
        let mut number = |key: &str, target: &mut usize, floor: usize| {
            let Some(raw) = get(key) else { return };
            match raw.trim().parse::<usize>() {
                Ok(value) if value >= floor => *target = value,
                Ok(value) => {
                    warnings.push(format!(
                        "{key}={value} is below the floor of {floor}; using {floor}"
                    ));
                    *target = floor;
                }
                Err(_) => warnings.push(format!("{key}={raw:?} is not a number; using {target}")),
            }
        };
        number(
            "min-length",
            &mut settings.min_length,
            NIST_ABSOLUTE_MINIMUM,
        );
        number(
            "min-length-with-mfa",
            &mut settings.min_length_with_mfa,
            NIST_ABSOLUTE_MINIMUM,
        );
        number("max-length", &mut settings.max_length, NIST_MIN_MAXIMUM);
        if settings.max_length < settings.min_length {
            warnings.push(format!(
                "max-length={} is below min-length={}; using {}",
                settings.max_length, settings.min_length, settings.min_length
            ));
            settings.max_length = settings.min_length;
        }
        settings.service_name = get("service-name").filter(|name| !name.trim().is_empty());
        settings.blocked_words = get("blocked-words")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|word| !word.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        (settings, warnings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn read(pairs: &[(&str, &str)]) -> (PolicySettings, Vec<String>) {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        PolicySettings::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn defaults_are_nist() {
        let (settings, warnings) = read(&[]);
        assert_eq!(settings, PolicySettings::default());
        assert!(warnings.is_empty());
    }

    #[test]
    fn bad_values_never_weaken_the_policy() {
        let (settings, warnings) = read(&[
            ("min-length", "4"),
            ("max-length", "20"),
            ("min-length-with-mfa", "x"),
        ]);
        assert_eq!(settings.min_length, NIST_ABSOLUTE_MINIMUM);
        assert_eq!(settings.max_length, NIST_MIN_MAXIMUM);
        assert_eq!(settings.min_length_with_mfa, 8);
        assert_eq!(warnings.len(), 3);
    }

    #[test]
    fn blocked_words_are_a_comma_list() {
        let (settings, _) = read(&[
            ("blocked-words", " acme, widget ,,"),
            ("service-name", "Acme ID"),
        ]);
        assert_eq!(settings.blocked_words, vec!["acme", "widget"]);
        assert_eq!(settings.service_name.as_deref(), Some("Acme ID"));
    }
}
