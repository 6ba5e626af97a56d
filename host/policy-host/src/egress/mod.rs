//! The egress gateway: the only way out of a plugin.
//!
//! Every `wasi:http` request a plugin makes arrives in [`hooks::EgressHooks::send_request`] and
//! goes through, in order:
//!
//! 1. **allowlist** ([`allowlist`]): scheme + host + port (+ path prefix) of the plugin's
//!    configured destinations; anything else is refused (`HttpRequestDenied`) and logged with
//!    the plugin's name;
//! 2. **secrets** ([`secrets`]): `{{secret:NAME}}` placeholders replaced, only for destinations
//!    bound to `NAME`;
//! 3. **cache + single-flight** ([`cache`]) for GETs without secrets;
//! 4. **circuit breaker** ([`breaker`]) and a **concurrency limit** per destination;
//! 5. **SSRF guard** ([`address_guard`]): resolve once, refuse non-public addresses unless the
//!    destination allows them, connect to exactly the checked addresses;
//! 6. **retries** ([`retry`]) for safe requests and transient failures, full-jitter backoff,
//!    bounded by a retry budget (tower's `TpsBudget`) and the decision's deadline;
//! 7. **timeouts** (connect, first byte, between bytes; the guest's own options can only make
//!    them shorter) and a **response size cap** ([`client`]).

pub mod address_guard;
pub mod allowlist;
pub mod breaker;
pub mod cache;
pub mod canonical;
pub mod client;
pub mod config;
pub mod hooks;
pub mod log_throttle;
pub mod outgoing_handler;
pub mod pool;
pub mod redact;
pub mod retry;
pub mod secrets;
pub mod trace;

use self::{
    address_guard::AddressError,
    allowlist::Destination,
    breaker::{BreakerState, CircuitBreaker},
    cache::{BufferedResponse, CacheEntry, ResponseCache},
    client::{Attempt, AttemptError, AttemptTimeouts},
    config::{CallPolicy, DestinationConfig, EgressConfig},
    redact::Redactor,
    secrets::SecretStore,
};
use bytes::Bytes;
use http::{HeaderValue, Method, Request, header::HOST};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::sync::Semaphore;
use tower::retry::budget::{Budget, TpsBudget};
use wasmtime_wasi_http::RequestOptions;

/// Why the gateway did not return a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EgressError {
    #[error("request denied: {0}")]
    Denied(String),
    #[error("{0}")]
    AddressRefused(String),
    #[error("cannot resolve: {0}")]
    Resolve(String),
    #[error("circuit breaker open for {origin}")]
    BreakerOpen { origin: String },
    #[error("request body larger than {limit} bytes")]
    RequestTooLarge { limit: usize },
    #[error("the decision's deadline leaves no time for this request")]
    DeadlineExceeded,
    /// The upstream compressed its answer although the gateway asked for `identity`: the
    /// response could not be checked for secrets, so it is not handed over.
    #[error("the response is content-encoded ({encoding}); only identity is accepted")]
    ContentEncoded { encoding: String },
    #[error("{0}")]
    Attempt(AttemptError),
}

/// One allowed destination of one plugin, with its call policy resolved.
#[derive(Debug, Clone)]
pub struct Rule {
    pub destination: Destination,
    pub config: DestinationConfig,
    pub policy: CallPolicy,
}

/// What one plugin may reach.
#[derive(Debug, Clone)]
pub struct PluginEgress {
    pub plugin: Arc<str>,
    pub rules: Vec<Rule>,
}

impl PluginEgress {
    /// Parses a plugin's destinations, filling in the gateway's defaults.
    pub fn new(
        plugin: &str,
        destinations: &[DestinationConfig],
        defaults: &CallPolicy,
    ) -> Result<Self, String> {
        let rules = destinations
            .iter()
            .map(|config| {
                Ok(Rule {
                    destination: Destination::parse(&config.url)?,
                    policy: config.policy.clone().unwrap_or_else(|| defaults.clone()),
                    config: config.clone(),
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            plugin: plugin.into(),
            rules,
        })
    }

    fn rule_for(&self, uri: &http::Uri) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.destination.matches(uri))
    }
}

/// Per-destination state: breaker, retry budget, concurrency limit.
struct DestinationState {
    breaker: CircuitBreaker,
    budget: TpsBudget,
    slots: Semaphore,
}

/// The gateway shared by every plugin of a host.
pub struct EgressGateway {
    config: EgressConfig,
    secrets: Arc<SecretStore>,
    cache: ResponseCache,
    pool: pool::ConnectionPool,
    resolver: address_guard::NameResolver,
    tls: Arc<rustls::ClientConfig>,
    destinations: Mutex<HashMap<String, Arc<DestinationState>>>,
}

impl EgressGateway {
    /// Loads the secrets and sets up the cache and TLS roots (webpki's Mozilla roots).
    pub fn new(config: EgressConfig) -> Result<Self, String> {
        let secrets = Arc::new(SecretStore::load(&config.secrets)?);
        secrets.watch(config.secrets_refresh);
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS configuration: {error}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        if config.cache_entries.is_some() {
            tracing::warn!(
                "egress `cache-entries` is no longer used: the response cache is bounded by `cache-bytes`"
            );
        }
        let cache = cache::new_cache(config.cache_bytes);
        let pool = pool::ConnectionPool::new(config.pool.clone());
        let resolver = address_guard::NameResolver::new(&config.dns_servers);
        Ok(Self {
            pool,
            resolver,
            config,
            secrets,
            cache,
            tls: Arc::new(tls),
            destinations: Mutex::new(HashMap::new()),
        })
    }

    /// Finds every configured secret (as in force now, and the value each replaced) in any
    /// common encoding: for anything a plugin produced before it reaches a log line or a caller.
    pub fn redactor(&self) -> Arc<Redactor> {
        self.secrets.redactor()
    }

    /// The secrets, as in force now (file secrets rotate without a restart).
    pub fn secrets(&self) -> &Arc<SecretStore> {
        &self.secrets
    }

    /// The idle keep-alive connections.
    pub fn pool(&self) -> &pool::ConnectionPool {
        &self.pool
    }

    /// The host-wide defaults for destinations.
    pub fn defaults(&self) -> &CallPolicy {
        &self.config.defaults
    }

    /// The breaker state of a plugin's destination, if it has been called.
    pub fn breaker_state(&self, plugin: &str, origin: &str) -> Option<BreakerState> {
        let destinations = self
            .destinations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        destinations
            .get(&format!("{plugin} {origin}"))
            .map(|state| state.breaker.state())
    }

    fn state_for(&self, plugin: &str, rule: &Rule) -> Arc<DestinationState> {
        let key = format!("{plugin} {}", rule.destination.origin());
        let mut destinations = self
            .destinations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        destinations
            .entry(key)
            .or_insert_with(|| {
                let policy = &rule.policy;
                Arc::new(DestinationState {
                    breaker: CircuitBreaker::new(
                        format!("{plugin} {}", rule.destination.origin()),
                        policy.breaker.clone(),
                    ),
                    budget: TpsBudget::new(
                        Duration::from_secs(10),
                        policy.retry_budget_min_per_sec,
                        policy.retry_budget_percent,
                    ),
                    slots: Semaphore::new(policy.max_concurrency.max(1)),
                })
            })
            .clone()
    }

    /// Sends `request` for `egress`'s plugin, finishing before `deadline`.
    pub async fn send(
        &self,
        egress: &PluginEgress,
        request: Request<Bytes>,
        guest_options: Option<RequestOptions>,
        deadline: Instant,
    ) -> Result<BufferedResponse, EgressError> {
        let plugin = &*egress.plugin;
        let started = Instant::now();
        // Only canonical URLs are matched, and then sent exactly as matched (see `canonical`).
        let request = canonical::admit(plugin, request)?;
        let Some(rule) = egress.rule_for(request.uri()) else {
            let target = format!("{} {}", request.method(), redact_query(request.uri()));
            tracing::warn!(plugin, %target, "egress denied: destination not on the plugin's allowlist");
            metrics::counter!("egress_denied_total", "plugin" => plugin.to_owned(), "reason" => "allowlist").increment(1);
            return Err(EgressError::Denied(format!(
                "{target} is not on the allowlist of plugin `{plugin}`"
            )));
        };
        let origin = rule.destination.origin();
        let labels = [
            ("plugin", plugin.to_owned()),
            ("destination", origin.clone()),
        ];
        metrics::counter!("egress_requests_total", &labels).increment(1);

        let (request, used_secrets) = self.inject_secrets(request, rule).inspect_err(|error| {
            tracing::warn!(plugin, destination = %origin, %error, "egress denied");
            metrics::counter!("egress_denied_total", "plugin" => plugin.to_owned(), "reason" => "secret").increment(1);
        })?;

        let state = self.state_for(plugin, rule);
        // A shared cache never stores answers to credentialed requests (RFC 9111 §3.5).
        let cacheable = request.method() == Method::GET
            && used_secrets.is_empty()
            && !request.headers().contains_key(http::header::AUTHORIZATION);
        let result = if cacheable {
            let key = request.uri().to_string();
            if let Some(entry) = self.cache.get(&key).await {
                metrics::counter!("egress_cache_hits_total", &labels).increment(1);
                Ok((*entry.response).clone())
            } else {
                let fetched = self
                    .cache
                    .try_get_with(key, async {
                        let response = self
                            .fetch(plugin, rule, &state, request, guest_options, deadline)
                            .await
                            .map_err(Uncached::Failed)?;
                        match cache::cache_ttl(&response, rule.config.cache_ttl) {
                            Some(ttl) => Ok(CacheEntry {
                                response: Arc::new(cache::compact(response)),
                                ttl,
                            }),
                            None => Err(Uncached::Response(response)),
                        }
                    })
                    .await;
                match fetched {
                    Ok(entry) => Ok((*entry.response).clone()),
                    Err(shared) => match &*shared {
                        Uncached::Response(response) => Ok(response.clone()),
                        Uncached::Failed(error) => Err(error.clone()),
                    },
                }
            }
        } else {
            self.fetch(plugin, rule, &state, request, guest_options, deadline)
                .await
        };
        metrics::histogram!("egress_latency_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        metrics::gauge!("egress_breaker_state", &labels).set(match state.breaker.state() {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        });
        result.and_then(|response| sanitize(response, &self.secrets.redactor()))
    }

    /// Substitutes secret placeholders in header values and the body; refuses unbound ones.
    fn inject_secrets(
        &self,
        request: Request<Bytes>,
        rule: &Rule,
    ) -> Result<(Request<Bytes>, Vec<String>), EgressError> {
        let (mut parts, body) = request.into_parts();
        if body.len() > self.config.max_request_bytes {
            return Err(EgressError::RequestTooLarge {
                limit: self.config.max_request_bytes,
            });
        }
        let mut used = Vec::new();
        let allowed = &rule.config.secrets;
        for value in parts.headers.values_mut() {
            if let Some(replaced) = self
                .secrets
                .substitute(value.as_bytes(), allowed, &mut used)
                .map_err(EgressError::Denied)?
            {
                *value = HeaderValue::from_bytes(&replaced).map_err(|_| {
                    EgressError::Denied("secret is not a valid header value".to_owned())
                })?;
                value.set_sensitive(true);
            }
        }
        let body = match self
            .secrets
            .substitute(&body, allowed, &mut used)
            .map_err(EgressError::Denied)?
        {
            Some(replaced) => Bytes::from(replaced),
            None => body,
        };
        // Where a request goes is decided by its URI alone, never by a guest's Host header:
        // the Host header names the checked origin (never userinfo).
        let host = HeaderValue::try_from(rule.destination.authority())
            .map_err(|_| EgressError::Denied("destination is not a valid Host".to_owned()))?;
        parts.headers.insert(HOST, host);
        Ok((Request::from_parts(parts, body), used))
    }

    /// Breaker, concurrency limit, SSRF guard, attempts with retries.
    ///
    /// The breaker is asked first, so an open breaker answers before any lookup or wait, and
    /// every attempt holds a permit from it: whatever ends an attempt without a usable answer
    /// is a recorded failure (a lookup that fails or hangs, a full concurrency limit, a
    /// timeout, a reset, a 5xx or 429, and a cancellation by the decision's deadline, through
    /// the permit's drop). Only the gateway's own refusal (SSRF) records nothing.
    async fn fetch(
        &self,
        plugin: &str,
        rule: &Rule,
        state: &DestinationState,
        request: Request<Bytes>,
        guest: Option<RequestOptions>,
        deadline: Instant,
    ) -> Result<BufferedResponse, EgressError> {
        let policy = &rule.policy;
        let origin = rule.destination.origin();
        let remaining = || deadline.saturating_duration_since(Instant::now());
        let permit = admit(plugin, &origin, state)?;
        let _slot = tokio::time::timeout(remaining(), state.slots.acquire())
            .await
            .map_err(|_| EgressError::DeadlineExceeded)?
            .map_err(|_| EgressError::DeadlineExceeded)?;
        // A resolver that never answers must not hold the decision: the lookup gets the
        // connect timeout.
        let lookup_budget = policy.connect_timeout.min(remaining());
        let lookup = address_guard::resolve_checked(
            &self.resolver,
            &rule.destination.host,
            rule.destination.port,
            rule.config.allow_private,
        );
        let addresses = match tokio::time::timeout(lookup_budget, lookup).await {
            Ok(Ok(addresses)) => addresses,
            Ok(Err(error @ AddressError::Refused { .. })) => {
                permit.discard();
                tracing::warn!(plugin, destination = %origin, %error, "egress refused");
                return Err(EgressError::AddressRefused(error.to_string()));
            }
            Ok(Err(error)) => {
                permit.record(false);
                log_failure(plugin, &origin, "unresolvable", &error);
                return Err(EgressError::Resolve(error.to_string()));
            }
            Err(_) => {
                permit.record(false);
                let error = format!(
                    "cannot resolve {}: no answer within {lookup_budget:?}",
                    rule.destination.host
                );
                log_failure(plugin, &origin, "resolve-timeout", &error);
                return Err(EgressError::Resolve(error));
            }
        };
        let idempotent = retry::is_idempotent(request.method())
            || rule
                .config
                .idempotency_header
                .as_ref()
                .is_some_and(|header| request.headers().contains_key(header.as_str()));
        state.budget.deposit();
        let mut retries = 0;
        let mut permit = Some(permit);
        loop {
            let permit = match permit.take() {
                Some(permit) => permit,
                None => admit(plugin, &origin, state)?,
            };
            let left = remaining();
            if left.is_zero() {
                permit.record(false);
                return Err(EgressError::DeadlineExceeded);
            }
            let clamp = |configured: Duration, guest: Option<Duration>| {
                guest
                    .map_or(configured, |guest| guest.min(configured))
                    .min(left)
            };
            let timeouts = AttemptTimeouts {
                connect: clamp(
                    policy.connect_timeout,
                    guest.and_then(|options| options.connect_timeout),
                ),
                first_byte: clamp(
                    policy.first_byte_timeout,
                    guest.and_then(|options| options.first_byte_timeout),
                ),
                between_bytes: clamp(
                    policy.between_bytes_timeout,
                    guest.and_then(|options| options.between_bytes_timeout),
                ),
            };
            let attempt = Attempt {
                use_tls: rule.destination.scheme == "https",
                host: &rule.destination.host,
                addresses: &addresses,
                request: request.clone(),
                timeouts,
                max_response_bytes: policy.max_response_bytes,
                tls: &self.tls,
                pool: &self.pool,
            };
            let outcome = tokio::time::timeout(left, client::send_once(attempt))
                .await
                .unwrap_or(Err(AttemptError::FirstByteTimeout));
            let (usable, retryable) = match &outcome {
                Ok(response) => {
                    let status = response.status.as_u16();
                    (
                        status < 500 && status != 429,
                        retry::is_retryable_status(status) && idempotent,
                    )
                }
                Err(error) => (
                    false,
                    error.is_transient() && (idempotent || error.nothing_sent()),
                ),
            };
            permit.record(usable);
            if let Err(error) = &outcome {
                log_failure(plugin, &origin, error.kind(), error);
            }
            if retryable && retries < policy.max_retries {
                let delay = retry::full_jitter_delay(policy.retry_base, policy.retry_cap, retries);
                if delay < remaining() && state.budget.withdraw() {
                    metrics::counter!("egress_retries_total", "plugin" => plugin.to_owned(), "destination" => origin.clone()).increment(1);
                    tokio::time::sleep(delay).await;
                    retries += 1;
                    continue;
                }
            }
            return outcome.map_err(EgressError::Attempt);
        }
    }
}

/// Asks the destination's breaker for a permit; an open breaker fails fast, counted and logged
/// at most once per interval.
fn admit<'a>(
    plugin: &str,
    origin: &str,
    state: &'a DestinationState,
) -> Result<breaker::Permit<'a>, EgressError> {
    state.breaker.try_acquire().map_err(|_| {
        metrics::counter!("egress_breaker_rejections_total", "plugin" => plugin.to_owned(), "destination" => origin.to_owned()).increment(1);
        EgressError::BreakerOpen {
            origin: origin.to_owned(),
        }
    })
}

/// Logs an upstream failure: the first at once, then one line per interval with a count.
fn log_failure(plugin: &str, origin: &str, kind: &str, error: &dyn std::fmt::Display) {
    metrics::counter!("egress_failures_total", "plugin" => plugin.to_owned(), "destination" => origin.to_owned(), "kind" => kind.to_owned()).increment(1);
    log_throttle::warn_throttled(&format!("{plugin} {origin} {kind}"), |suppressed| {
        tracing::warn!(
            plugin,
            destination = %origin,
            kind,
            %error,
            suppressed,
            "egress attempt failed ({suppressed} more like it in the last {:?} not logged)",
            log_throttle::INTERVAL
        );
    });
}

/// What a plugin may see of a response: nothing content-encoded (it would decode it past the
/// scrub), and no configured secret, in any common encoding, in any header or in the body.
fn sanitize(
    mut response: BufferedResponse,
    redactor: &Redactor,
) -> Result<BufferedResponse, EgressError> {
    if let Some(encoding) = response.headers.get(http::header::CONTENT_ENCODING)
        && !encoding.as_bytes().eq_ignore_ascii_case(b"identity")
    {
        return Err(EgressError::ContentEncoded {
            encoding: String::from_utf8_lossy(encoding.as_bytes()).into_owned(),
        });
    }
    // The common case (nothing to hide) costs one scan and no copy: this runs on every cache hit.
    let leaks = response.headers.iter().any(|(name, value)| {
        redactor.finds(name.as_str().as_bytes()) || redactor.finds(value.as_bytes())
    });
    if leaks {
        response.headers = redact_headers(std::mem::take(&mut response.headers), redactor);
    }
    if let Some(redacted) = redactor.redact_bytes(&response.body) {
        response.body = Bytes::from(redacted);
        response
            .headers
            .insert(http::header::CONTENT_LENGTH, response.body.len().into());
    }
    Ok(response)
}

/// `headers` without any header whose name holds a secret, and with secrets in values replaced.
fn redact_headers(headers: http::HeaderMap, redactor: &Redactor) -> http::HeaderMap {
    let mut clean = http::HeaderMap::with_capacity(headers.len());
    let mut last_name = None;
    for (name, value) in headers {
        let name = name.or(last_name.clone());
        let Some(name) = name else { continue };
        last_name = Some(name.clone());
        if redactor.finds(name.as_str().as_bytes()) {
            continue;
        }
        let value = match redactor.redact_bytes(value.as_bytes()) {
            Some(redacted) => HeaderValue::from_bytes(&redacted)
                .unwrap_or_else(|_| HeaderValue::from_static(redact::REDACTED)),
            None => value,
        };
        clean.append(name, value);
    }
    clean
}

/// Why a fetched result did not go into the cache: shared with coalesced waiters.
#[derive(Debug)]
enum Uncached {
    Response(BufferedResponse),
    Failed(EgressError),
}

/// The URI without its query (queries can carry tokens); for logs.
fn redact_query(uri: &http::Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}{}", uri.path()),
        _ => uri.path().to_owned(),
    }
}
