//! Egress configuration: destinations a plugin may reach, and how calls to them are made.

use serde::Deserialize;
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

/// Host-wide egress settings (`[egress]`) and the secrets plugins may refer to.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EgressConfig {
    /// Defaults for every destination; each destination may override them.
    pub defaults: CallPolicy,
    /// Largest request body a plugin may send, in bytes (`max-request-bytes`).
    #[serde(rename = "max-request-bytes")]
    pub max_request_bytes: usize,
    /// Most bytes of responses kept in the response cache (`cache-bytes`): bounded by size, not
    /// by count, so large answers (a real range body is ~36 KB) cannot grow memory unchecked.
    /// Default 32 MiB (~900 real ranges): see the README for the measured trade-off.
    #[serde(rename = "cache-bytes")]
    pub cache_bytes: u64,
    /// Former count bound of the cache (`cache-entries`): accepted and ignored, with a warning
    /// at start; use `cache-bytes`.
    #[serde(rename = "cache-entries")]
    pub cache_entries: Option<u64>,
    /// Idle keep-alive connections (`[...pool]`).
    pub pool: crate::pool::PoolConfig,
    /// Name servers the gateway asks (`dns-servers`, e.g. `["10.0.0.2:53"]`); empty: the
    /// system's resolver. Either way a lookup is bounded by the destination's connect timeout.
    #[serde(rename = "dns-servers")]
    pub dns_servers: Vec<std::net::SocketAddr>,
    /// How often secrets read from files are re-read (`secrets-refresh-ms`): a rotated file is
    /// used from the next request on, without a restart.
    #[serde(rename = "secrets-refresh-ms", with = "millis")]
    pub secrets_refresh: Duration,
    /// Secrets by name (`[egress.secrets.<name>]`): where the value comes from.
    pub secrets: BTreeMap<String, SecretSource>,
    /// PEM files of CA certificates trusted for `https` destinations besides the Mozilla roots
    /// (`tls-roots`), e.g. a company's internal CA. Read once, when the gateway starts.
    #[serde(rename = "tls-roots")]
    pub tls_roots: Vec<PathBuf>,
    /// URL prefixes of plugin destinations that receive the request's W3C `traceparent`
    /// (`trace-context-destinations`; default none: third parties get no trace header).
    #[serde(rename = "trace-context-destinations")]
    pub trace_context_destinations: Vec<String>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            defaults: CallPolicy::default(),
            max_request_bytes: 64 << 10,
            cache_bytes: 32 << 20,
            cache_entries: None,
            pool: crate::pool::PoolConfig::default(),
            secrets_refresh: Duration::from_secs(1),
            dns_servers: Vec::new(),
            secrets: BTreeMap::new(),
            tls_roots: Vec::new(),
            trace_context_destinations: Vec::new(),
        }
    }
}

/// Where a secret's value comes from. Values are read when the gateway starts.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (trailing newline removed), e.g. a mounted Kubernetes secret.
    File(PathBuf),
    /// A literal value: for tests and local development only.
    Value(String),
}

/// One destination a plugin may call (`[[plugins.slots.<name>.egress]]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Scheme, host, optional port and optional path prefix, e.g.
    /// `https://api.pwnedpasswords.com/range/`. A request matches when its scheme, host and
    /// port are equal and its path starts with the prefix.
    pub url: String,
    /// Allow loopback, private, link-local and other non-public addresses for this destination
    /// (`allow-private`). Off by default: a public host name resolving to a private address is
    /// refused (SSRF, cloud metadata).
    #[serde(rename = "allow-private", default)]
    pub allow_private: bool,
    /// Secrets that may be substituted into requests to this destination (`secrets`).
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Cache successful GET responses for this long unless `Cache-Control` says otherwise
    /// (`cache-ttl-ms`); absent means only responses with `max-age` are cached.
    #[serde(rename = "cache-ttl-ms", default, with = "optional_millis")]
    pub cache_ttl: Option<Duration>,
    /// Requests carrying this header are safe to retry even when their method is not
    /// idempotent (`idempotency-header`, e.g. a provider's idempotency key).
    #[serde(rename = "idempotency-header", default)]
    pub idempotency_header: Option<String>,
    /// Overrides of the host-wide call policy.
    #[serde(default)]
    pub policy: Option<CallPolicy>,
}

/// Timeouts, retries, breaker, limits: how calls to one destination are made.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallPolicy {
    /// Bound on the name lookup, each TCP connect and the TLS handshake (`connect-timeout-ms`).
    #[serde(rename = "connect-timeout-ms", with = "millis")]
    pub connect_timeout: Duration,
    /// Longest wait from sending the request to the response head (`first-byte-timeout-ms`).
    #[serde(rename = "first-byte-timeout-ms", with = "millis")]
    pub first_byte_timeout: Duration,
    /// Longest wait for the next chunk of the response body (`between-bytes-timeout-ms`).
    #[serde(rename = "between-bytes-timeout-ms", with = "millis")]
    pub between_bytes_timeout: Duration,
    /// Responses larger than this are cut off with an error (`max-response-bytes`).
    #[serde(rename = "max-response-bytes")]
    pub max_response_bytes: usize,
    /// Retries after the first attempt (`max-retries`); only safe requests, retryable failures.
    #[serde(rename = "max-retries")]
    pub max_retries: u32,
    /// First backoff ceiling (`retry-base-ms`); each retry doubles it, up to `retry-cap-ms`.
    /// The actual delay is uniformly random below the ceiling ("full jitter").
    #[serde(rename = "retry-base-ms", with = "millis")]
    pub retry_base: Duration,
    /// Largest backoff ceiling, however many retries came before (`retry-cap-ms`).
    #[serde(rename = "retry-cap-ms", with = "millis")]
    pub retry_cap: Duration,
    /// Retries allowed as a share of recent requests (`retry-budget-percent`), on top of
    /// `retry-budget-min-per-sec`: a storm of failures can't multiply the load.
    #[serde(rename = "retry-budget-percent")]
    pub retry_budget_percent: f32,
    /// Retries per second allowed whatever the recent traffic (`retry-budget-min-per-sec`), so
    /// a destination called rarely can still retry.
    #[serde(rename = "retry-budget-min-per-sec")]
    pub retry_budget_min_per_sec: u32,
    /// The circuit breaker (`[...policy.breaker]`).
    pub breaker: BreakerConfig,
    /// Most requests in flight to the destination (`max-concurrency`).
    #[serde(rename = "max-concurrency")]
    pub max_concurrency: usize,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            // Below the default decision deadline (1 s), which every plugin call must fit in.
            connect_timeout: Duration::from_millis(500),
            first_byte_timeout: Duration::from_millis(800),
            between_bytes_timeout: Duration::from_millis(500),
            max_response_bytes: 1 << 20,
            max_retries: 1,
            retry_base: Duration::from_millis(50),
            retry_cap: Duration::from_secs(1),
            retry_budget_percent: 0.2,
            retry_budget_min_per_sec: 1,
            breaker: BreakerConfig::default(),
            max_concurrency: 64,
        }
    }
}

/// Circuit breaker thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Open when at least this share of the recent calls failed (`failure-rate`, 0..1).
    #[serde(rename = "failure-rate")]
    pub failure_rate: f32,
    /// ...over at least this many calls (`minimum-calls`); also the size of the window.
    #[serde(rename = "minimum-calls")]
    pub minimum_calls: u32,
    /// How long it stays open before letting probes through (`open-ms`).
    #[serde(rename = "open-ms", with = "millis")]
    pub open_for: Duration,
    /// Probes let through while half-open; all must succeed to close (`half-open-probes`).
    #[serde(rename = "half-open-probes")]
    pub half_open_probes: u32,
    /// A call that takes longer than this counts as slow (`slow-call-ms`), even if it succeeds,
    /// so an upstream that answers just inside the deadline opens the breaker before it eats
    /// every decision's budget. Unset: for plugin destinations, 60 % of the decision deadline;
    /// for the service's own calls, never.
    #[serde(rename = "slow-call-ms", default, with = "optional_millis")]
    pub slow_call: Option<Duration>,
    /// Open when at least this share of the recent calls was slow (`slow-call-rate`, 0..1).
    #[serde(rename = "slow-call-rate")]
    pub slow_call_rate: f32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_rate: 0.5,
            minimum_calls: 20,
            open_for: Duration::from_secs(30),
            half_open_probes: 2,
            slow_call: None,
            slow_call_rate: 1.0,
        }
    }
}

pub(crate) mod millis {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

mod optional_millis {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        Option::<u64>::deserialize(deserializer).map(|value| value.map(Duration::from_millis))
    }
}
