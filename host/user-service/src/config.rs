//! The service's configuration: one TOML file (every key optional; `user-service.example.toml`
//! shows them all with their defaults) plus environment overrides for secrets and URLs.

use crate::{
    outbound::{discovery::ServiceLocation, token::ClientCredentialsConfig},
    outbox::{EventsConfig, sinks::SinkConfig},
    security_policy::SecurityPoliciesConfig,
};
use policy_host::{HostConfig, egress::config::EgressConfig};
use serde::Deserialize;
use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

/// Everything the service reads at start.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    /// Address to listen on (`listen`; env `USER_SERVICE_LISTEN`).
    pub listen: SocketAddr,
    /// `sqlite://...` (default, created on first start) or `postgres://...`
    /// (`database-url`; env `DATABASE_URL`).
    #[serde(rename = "database-url")]
    pub database_url: String,
    /// This service's name: a context word for the password policy (`service-name`).
    #[serde(rename = "service-name")]
    pub service_name: String,
    /// Bearer token for `/admin/*` (`admin-token`; env `USER_SERVICE_ADMIN_TOKEN`). Without
    /// one, the admin endpoints answer 404.
    #[serde(rename = "admin-token")]
    pub admin_token: Option<String>,
    /// `text` (default) or `json` logs (`log-format`).
    #[serde(rename = "log-format")]
    pub log_format: LogFormat,
    /// Largest request body accepted, in bytes (`max-body-bytes`).
    #[serde(rename = "max-body-bytes")]
    pub max_body_bytes: usize,
    /// Install the bundled plugins into the plugin directory when they are missing
    /// (`install-bundled-plugins`).
    #[serde(rename = "install-bundled-plugins")]
    pub install_bundled_plugins: bool,
    /// The decisions each flow asks for (`[flows]`).
    pub flows: FlowConfig,
    /// Session lifetimes (`[sessions]`).
    pub sessions: crate::domain::sessions::SessionConfig,
    /// The policy host: plugin directory, limits, slots, egress (`[plugins]`).
    pub plugins: HostConfig,
    /// How the service's own calls to internal services are made (`[outbound]`: call policy
    /// defaults — timeouts, retries, breaker — like `[plugins.egress]`).
    pub outbound: EgressConfig,
    /// Internal services by logical name (`[services.<name>]`: `url`, or DNS `srv`).
    pub services: BTreeMap<String, ServiceLocation>,
    /// OAuth 2.0 client credentials for calls to internal services (`[service-auth]`).
    #[serde(rename = "service-auth")]
    pub service_auth: Option<ClientCredentialsConfig>,
    /// The outbox relay and its sinks (`[events]`).
    pub events: EventsConfig,
    /// Security policies from the Configuration Service (`[security-policies]`).
    #[serde(rename = "security-policies")]
    pub security_policies: SecurityPoliciesConfig,
    /// The HTTP server: trusted proxies, slow-client timeouts, connection and header limits
    /// (`[http]`).
    pub http: crate::server::HttpConfig,
    /// Optional OTLP export of spans (`[telemetry]`: `otlp-endpoint`, `service-name`); off
    /// unless an endpoint is configured.
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// Rollout hook: following the desired plugin state, the fleet, the decision log
    /// (`[rollout]`).
    pub rollout: crate::rollout::config::RolloutConfig,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A slot name in `[flows]`: the empty string (or only spaces) means the slot is disabled.
fn slot_name<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let name = String::deserialize(deserializer)?;
    let name = name.trim();
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

/// Which plugin slots the flows use and when.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlowConfig {
    /// Password-policy slot (`password-policy`); `None` (`""` in the file) skips the policy.
    #[serde(rename = "password-policy", deserialize_with = "slot_name")]
    pub password_policy: Option<String>,
    /// Breach-check slot (`breach-check`); `None` (`""` in the file) disables the check.
    #[serde(rename = "breach-check", deserialize_with = "slot_name")]
    pub breach_check: Option<String>,
    /// Captcha slot (`captcha`); `None` (`""` in the file, the default) disables CAPTCHA
    /// everywhere.
    #[serde(deserialize_with = "slot_name")]
    pub captcha: Option<String>,
    /// Ask for a CAPTCHA on registration (`captcha-on-register`).
    #[serde(rename = "captcha-on-register")]
    pub captcha_on_register: bool,
    /// Ask for a CAPTCHA on password-reset requests (`captcha-on-reset-request`). Unset, it
    /// follows `captcha-on-register`, which governed both before this key existed (deprecated:
    /// see [`FlowConfig::deprecations`]).
    #[serde(rename = "captcha-on-reset-request")]
    pub captcha_on_reset_request: Option<bool>,
    /// Failed logins (per account or client) after which a CAPTCHA is required
    /// (`captcha-after-failures`).
    #[serde(rename = "captcha-after-failures")]
    pub captcha_after_failures: u32,
    /// Consecutive failed logins after which an account is locked until a password reset
    /// (`lock-after-failures`; NIST SP 800-63B: at most 100).
    #[serde(rename = "lock-after-failures")]
    pub lock_after_failures: u32,
    /// A client address's failed logins are forgotten after this long without one
    /// (`client-failures-window-s`).
    #[serde(rename = "client-failures-window-s")]
    pub client_failures_window_s: u64,
    /// Lifetime of a password-reset token, in seconds (`reset-token-ttl-s`).
    #[serde(rename = "reset-token-ttl-s")]
    pub reset_token_ttl_s: u64,
    /// The link a reset notification carries; `{token}` is replaced by the reset token
    /// (`reset-link`).
    #[serde(rename = "reset-link")]
    pub reset_link: String,
    /// Lifetime of an email-verification token, in seconds (`verification-token-ttl-s`).
    #[serde(rename = "verification-token-ttl-s")]
    pub verification_token_ttl_s: u64,
    /// The link a verification notification carries; `{token}` is replaced by the token
    /// (`verification-link`).
    #[serde(rename = "verification-link")]
    pub verification_link: String,
    /// At most one re-sent verification per account per this many seconds
    /// (`verification-resend-interval-s`).
    #[serde(rename = "verification-resend-interval-s")]
    pub verification_resend_interval_s: u64,
    /// Refuse logins (`403 email-not-verified`) until the address is verified
    /// (`require-verified-email`).
    #[serde(rename = "require-verified-email")]
    pub require_verified_email: bool,
}

impl FlowConfig {
    /// Whether a password-reset request needs a CAPTCHA: `captcha-on-reset-request`, or when
    /// unset `captcha-on-register` (its former meaning).
    pub fn captcha_on_reset_request(&self) -> bool {
        self.captcha_on_reset_request
            .unwrap_or(self.captcha_on_register)
    }

    /// Settings that still work but are deprecated, each with what to write instead; logged
    /// as warnings at start.
    pub fn deprecations(&self) -> Vec<String> {
        let mut deprecations = Vec::new();
        if self.captcha_on_register && self.captcha_on_reset_request.is_none() {
            deprecations.push(
                "[flows] captcha-on-register = true also asks for a CAPTCHA on password-reset \
                 requests only because captcha-on-reset-request is unset; this fallback is \
                 deprecated: set captcha-on-reset-request = true (or false) explicitly"
                    .to_owned(),
            );
        }
        deprecations
    }
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            password_policy: Some("password-policy".to_owned()),
            breach_check: Some("breach-check".to_owned()),
            captcha: None,
            captcha_on_register: false,
            captcha_on_reset_request: None,
            captcha_after_failures: 3,
            lock_after_failures: 100,
            client_failures_window_s: 3600,
            reset_token_ttl_s: 3600,
            reset_link: "http://127.0.0.1:8080/reset-password?token={token}".to_owned(),
            verification_token_ttl_s: 86_400,
            verification_link: "http://127.0.0.1:8080/verify-email?token={token}".to_owned(),
            verification_resend_interval_s: 60,
            require_verified_email: false,
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        let mut plugins = HostConfig {
            dir: PathBuf::from("data/plugins"),
            cache_dir: Some(PathBuf::from("data/cache")),
            ..HostConfig::default()
        };
        // The bundled breach check asks the public Pwned Passwords API, caching ranges for hours.
        plugins
            .slots
            .insert("breach-check".to_owned(), default_breach_slot());
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://data/user-service.db".to_owned(),
            service_name: "User Service".to_owned(),
            admin_token: None,
            log_format: LogFormat::Text,
            max_body_bytes: 64 << 10,
            install_bundled_plugins: true,
            flows: FlowConfig::default(),
            sessions: crate::domain::sessions::SessionConfig::default(),
            plugins,
            outbound: default_outbound(),
            services: BTreeMap::new(),
            service_auth: None,
            events: EventsConfig::default(),
            security_policies: SecurityPoliciesConfig::default(),
            http: crate::server::HttpConfig::default(),
            telemetry: crate::telemetry::TelemetryConfig::default(),
            rollout: crate::rollout::config::RolloutConfig::default(),
        }
    }
}

/// Internal calls wait longer for a first byte than plugin calls (a notification provider may
/// take seconds); retries beyond one belong to the outbox.
fn default_outbound() -> EgressConfig {
    let mut outbound = EgressConfig::default();
    // Internal services are not bound by a plugin decision's deadline: roomier timeouts.
    outbound.defaults.connect_timeout = Duration::from_secs(1);
    outbound.defaults.first_byte_timeout = Duration::from_secs(5);
    outbound.defaults.between_bytes_timeout = Duration::from_secs(1);
    outbound
}

fn default_breach_slot() -> policy_host::PluginConfig {
    toml::from_str(
        r#"
        [[egress]]
        url = "https://api.pwnedpasswords.com/range/"
        cache-ttl-ms = 21600000
        "#,
    )
    .expect("the built-in breach-check slot parses")
}

impl ServiceConfig {
    /// Checks that every logical service a sink or the security policies name has a
    /// `[services.<name>]` table, so a typo fails at start rather than at the first delivery.
    pub fn check_service_references(&self) -> anyhow::Result<()> {
        let sinks = self.events.sinks.iter().filter_map(|sink| match sink {
            SinkConfig::Http { service, .. } | SinkConfig::NotificationEmail { service, .. } => {
                Some(("[[events.sinks]]", service))
            }
            SinkConfig::File { .. } | SinkConfig::Nats(_) => None,
        });
        let policies = self
            .security_policies
            .service
            .iter()
            .map(|service| ("[security-policies]", service));
        for (section, service) in sinks.chain(policies) {
            if !self.services.contains_key(service) {
                anyhow::bail!(
                    "{section} names service `{service}`, which has no [services.{service}] table"
                );
            }
        }
        Ok(())
    }

    /// Reads `path` (when given) over the defaults, then applies the environment overrides.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))?;
                toml::from_str::<Self>(&text).map_err(|error| {
                    anyhow::anyhow!("invalid configuration {}: {error}", path.display())
                })?
            }
            None => Self::default(),
        };
        if let Ok(listen) = std::env::var("USER_SERVICE_LISTEN") {
            config.listen = listen
                .parse()
                .map_err(|error| anyhow::anyhow!("USER_SERVICE_LISTEN={listen:?}: {error}"))?;
        }
        if let Ok(url) = std::env::var("DATABASE_URL") {
            config.database_url = url;
        }
        if let Ok(token) = std::env::var("USER_SERVICE_ADMIN_TOKEN") {
            config.admin_token = Some(token);
        }
        if let Ok(dir) = std::env::var("USER_SERVICE_PLUGIN_DIR") {
            config.plugins.dir = PathBuf::from(dir);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_flow_has_its_captcha_setting_and_the_old_coupling_is_warned_about() {
        let flows = |text: &str| toml::from_str::<ServiceConfig>(text).unwrap().flows;
        let old = flows("[flows]\ncaptcha-on-register = true\n");
        assert!(old.captcha_on_register && old.captcha_on_reset_request());
        assert_eq!(old.deprecations().len(), 1, "{:?}", old.deprecations());
        assert!(old.deprecations()[0].contains("captcha-on-reset-request"));
        let split =
            flows("[flows]\ncaptcha-on-register = true\ncaptcha-on-reset-request = false\n");
        assert!(split.captcha_on_register && !split.captcha_on_reset_request());
        assert!(split.deprecations().is_empty());
        let reset_only = flows("[flows]\ncaptcha-on-reset-request = true\n");
        assert!(!reset_only.captcha_on_register && reset_only.captcha_on_reset_request());
        assert!(reset_only.deprecations().is_empty());
        let default = flows("");
        assert!(!default.captcha_on_register && !default.captcha_on_reset_request());
        assert!(default.deprecations().is_empty());
    }

    #[test]
    fn an_empty_slot_name_disables_the_slot() {
        let flows = |text: &str| toml::from_str::<ServiceConfig>(text).unwrap().flows;
        let default = flows("");
        assert_eq!(default.password_policy.as_deref(), Some("password-policy"));
        assert_eq!(default.breach_check.as_deref(), Some("breach-check"));
        assert_eq!(default.captcha, None);
        let off = flows("[flows]\npassword-policy = \"\"\nbreach-check = \"  \"\ncaptcha = \"\"\n");
        assert_eq!(
            (off.password_policy, off.breach_check, off.captcha),
            (None, None, None)
        );
        let named = flows("[flows]\ncaptcha = \"captcha\"\nbreach-check = \"hibp\"\n");
        assert_eq!(named.captcha.as_deref(), Some("captcha"));
        assert_eq!(named.breach_check.as_deref(), Some("hibp"));
    }

    #[test]
    fn a_sink_naming_an_unconfigured_service_is_refused() {
        let mut config: ServiceConfig =
            toml::from_str("[[events.sinks]]\nkind = \"notification-email\"\n").unwrap();
        let error = config.check_service_references().unwrap_err().to_string();
        assert!(error.contains("[services.notification-service]"), "{error}");
        config.services.insert(
            "notification-service".to_owned(),
            ServiceLocation {
                url: Some("http://127.0.0.1:9".to_owned()),
                ..ServiceLocation::default()
            },
        );
        config.check_service_references().unwrap();
        config.security_policies.service = Some("configuration-service".to_owned());
        assert!(config.check_service_references().is_err());
        assert!(ServiceConfig::default().check_service_references().is_ok());
    }

    #[test]
    fn the_commented_outbound_examples_parse() {
        let text = r#"
            [services.notification-service]
            url = "http://notification-service.platform.svc.cluster.local:8080"
            [services.configuration-service]
            srv = "_http._tcp.configuration-service.service.consul"
            dns-servers = ["127.0.0.1:8600"]
            [service-auth]
            token-url = "https://auth.platform.internal/oauth2/token"
            client-id = "user-service"
            client-secret = { env = "USER_SERVICE_CLIENT_SECRET" }
            [[events.sinks]]
            kind = "http"
            service = "notification-service"
            [[events.sinks]]
            kind = "notification-email"
        "#;
        let parsed: ServiceConfig = toml::from_str(text).expect("parses");
        assert_eq!(parsed.services.len(), 2);
        assert_eq!(parsed.events.sinks.len(), 2);
        assert_eq!(parsed.service_auth.unwrap().refresh_before_s, 60);
    }

    #[test]
    fn the_example_file_parses_and_shows_the_defaults() {
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../user-service.example.toml");
        let text =
            std::fs::read_to_string(example).expect("the example file is at the repository root");
        let parsed: ServiceConfig = toml::from_str(&text).expect("the example parses");
        let defaults = ServiceConfig::default();
        assert_eq!(parsed.listen, defaults.listen);
        assert_eq!(parsed.database_url, defaults.database_url);
        assert_eq!(
            parsed.flows.lock_after_failures,
            defaults.flows.lock_after_failures
        );
        assert_eq!(
            parsed.plugins.limits.deadline,
            defaults.plugins.limits.deadline
        );
        assert_eq!(
            parsed.plugins.limits.memory_bytes,
            defaults.plugins.limits.memory_bytes
        );
        assert_eq!(
            parsed.plugins.egress.defaults.max_retries,
            defaults.plugins.egress.defaults.max_retries
        );
        assert_eq!(
            parsed.plugins.egress.defaults.breaker.minimum_calls,
            defaults.plugins.egress.defaults.breaker.minimum_calls
        );
        assert_eq!(parsed.flows.reset_link, defaults.flows.reset_link);
        assert_eq!(
            parsed.flows.verification_link,
            defaults.flows.verification_link
        );
        assert_eq!(
            format!("{:?}", parsed.sessions),
            format!("{:?}", defaults.sessions)
        );
        assert_eq!(
            parsed.flows.client_failures_window_s,
            defaults.flows.client_failures_window_s
        );
        assert_eq!(format!("{:?}", parsed.http), format!("{:?}", defaults.http));
        assert_eq!(
            parsed.outbound.defaults.first_byte_timeout,
            defaults.outbound.defaults.first_byte_timeout
        );
        assert_eq!(parsed.events.max_attempts, defaults.events.max_attempts);
        assert_eq!(parsed.events.retry_cap_ms, defaults.events.retry_cap_ms);
        assert_eq!(
            format!("{:?}", parsed.events.sinks),
            format!("{:?}", defaults.events.sinks)
        );
        assert_eq!(
            parsed.security_policies.max_stale_ms,
            defaults.security_policies.max_stale_ms
        );
        assert_eq!(
            parsed.security_policies.cache_file,
            defaults.security_policies.cache_file
        );
        assert!(parsed.services.is_empty() && parsed.service_auth.is_none());
        let breach = parsed
            .plugins
            .slot("breach-check")
            .expect("breach-check slot");
        assert_eq!(
            breach.egress[0].url,
            "https://api.pwnedpasswords.com/range/"
        );
        assert_eq!(
            breach.egress[0].cache_ttl,
            defaults.plugins.slot("breach-check").unwrap().egress[0].cache_ttl
        );
    }
}
