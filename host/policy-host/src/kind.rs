//! Plugin kinds: which world a plugin implements and what the host expects it to export.

use serde::Deserialize;
use std::fmt;

/// The WIT package every plugin world belongs to.
pub const WIT_PACKAGE: &str = "user-service:policy";
/// The version of that package this host implements. A plugin must export its interface at a
/// compatible version (same major; for 0.x, same minor).
pub const WIT_VERSION: &str = "0.1.0";

/// The kinds of decision a plugin can make; one WIT world each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    /// Is this new password acceptable? World `password-policy`, no network.
    PasswordPolicy,
    /// Has this password been breached? World `breach-check`, `wasi:http` through the gateway.
    BreachCheck,
    /// Is this attempt from a human? World `captcha`, `wasi:http` through the gateway.
    Captcha,
}

impl PluginKind {
    /// Every kind, in a stable order.
    pub const ALL: [PluginKind; 3] = [Self::PasswordPolicy, Self::BreachCheck, Self::Captcha];

    /// The WIT world name, which is also the default plugin (and file) name of this kind.
    pub fn world(self) -> &'static str {
        match self {
            Self::PasswordPolicy => "password-policy",
            Self::BreachCheck => "breach-check",
            Self::Captcha => "captcha",
        }
    }

    /// A short human name, for messages: "password policy check", "breach check", "CAPTCHA check".
    pub fn description(self) -> &'static str {
        match self {
            Self::PasswordPolicy => "password policy check",
            Self::BreachCheck => "breach check",
            Self::Captcha => "CAPTCHA check",
        }
    }

    /// The interface the world exports.
    pub fn exported_interface(self) -> &'static str {
        match self {
            Self::PasswordPolicy => "password-rules",
            Self::BreachCheck => "breach-lookup",
            Self::Captcha => "captcha-verifier",
        }
    }

    /// The kind whose world is called `name`, if any.
    pub fn from_world(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.world() == name)
    }

    /// Which kind a component implements, judged by its exports, with the version it
    /// exports. `None` when it exports none of our interfaces.
    pub fn detect<'a>(export_names: impl IntoIterator<Item = &'a str>) -> Option<(Self, String)> {
        export_names.into_iter().find_map(|name| {
            let (path, version) = name.split_once('@')?;
            let interface = path.strip_prefix(WIT_PACKAGE)?.strip_prefix('/')?;
            let kind = Self::ALL
                .into_iter()
                .find(|kind| kind.exported_interface() == interface)?;
            Some((kind, version.to_owned()))
        })
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.world())
    }
}

/// True when a plugin built against WIT `version` can be served by this host: same major
/// version, and for 0.x the same minor too (semver's rule for pre-1.0 compatibility).
pub fn is_compatible_wit_version(version: &str) -> bool {
    let (Ok(host), Ok(plugin)) = (
        semver::Version::parse(WIT_VERSION),
        semver::Version::parse(version),
    ) else {
        return false;
    };
    host.major == plugin.major && (host.major != 0 || host.minor == plugin.minor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_kind_from_exports() {
        let exports = [
            "wasi:cli/run@0.2.0",
            "user-service:policy/breach-lookup@0.1.0",
        ];
        assert_eq!(
            PluginKind::detect(exports),
            Some((PluginKind::BreachCheck, "0.1.0".to_owned()))
        );
        assert_eq!(PluginKind::detect(["other:pkg/password-rules@0.1.0"]), None);
    }

    #[test]
    fn wit_compatibility_follows_semver() {
        assert!(is_compatible_wit_version("0.1.0"));
        assert!(is_compatible_wit_version("0.1.7"));
        assert!(!is_compatible_wit_version("0.2.0"));
        assert!(!is_compatible_wit_version("1.0.0"));
        assert!(!is_compatible_wit_version("banana"));
    }
}
