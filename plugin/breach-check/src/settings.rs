//! The plugin's settings, read through the host's `settings` interface.

/// Where to ask and what counts as breached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachSettings {
    /// The range API's base URL (`base-url`); `GET {base-url}/range/{prefix}`.
    pub base_url: String,
    /// Most appearances tolerated (`max-breaches`): more than this is `breached`.
    pub max_breaches: u64,
    /// Sent as `User-Agent` (`user-agent`); the Pwned Passwords API asks for a descriptive one.
    pub user_agent: String,
    /// First-byte timeout asked of the host (`timeout-ms`); the host may shorten it.
    pub timeout_ms: u64,
}

impl Default for BreachSettings {
    fn default() -> Self {
        Self {
            base_url: "https://api.pwnedpasswords.com".to_owned(),
            max_breaches: 0,
            user_agent: concat!("user-service-breach-check/", env!("CARGO_PKG_VERSION")).to_owned(),
            timeout_ms: 800,
        }
    }
}

impl BreachSettings {
    /// Reads the settings through `get`; unusable values keep their defaults, with a warning.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> (Self, Vec<String>) {
        let mut settings = Self::default();
        let mut warnings = Vec::new();
        if let Some(url) = get("base-url") {
            settings.base_url = url.trim().to_owned();
        }
        if let Some(agent) = get("user-agent").filter(|agent| !agent.trim().is_empty()) {
            settings.user_agent = agent.trim().to_owned();
        }
        for (key, target) in [
            ("max-breaches", &mut settings.max_breaches),
            ("timeout-ms", &mut settings.timeout_ms),
        ] {
            if let Some(raw) = get(key) {
                match raw.trim().parse() {
                    Ok(value) => *target = value,
                    Err(_) => {
                        warnings.push(format!("{key}={raw:?} is not a number; using {target}"));
                    }
                }
            }
        }
        (settings, warnings)
    }
}
