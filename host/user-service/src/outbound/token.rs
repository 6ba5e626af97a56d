//! OAuth 2.0 client-credentials access tokens for calls to internal services (RFC 6749 §4.4).
//!
//! One token is fetched, shared by every call, and refreshed shortly before it expires; callers
//! that arrive while a fetch is running wait for that fetch instead of starting their own. The
//! token is only ever attached by [`super::InternalClient`], which only calls configured
//! internal services: plugins' egress (HIBP, CAPTCHA providers) has no way to reach it.

use super::{
    OutboundError,
    assertion::{ClientAssertion, ClientAssertionConfig, JWT_BEARER},
    scrub::describe_response,
};
use base64::Engine as _;
use bytes::Bytes;
use egress::{
    Caller, CallerPolicy, EgressGateway,
    config::{CallPolicy, DestinationConfig, SecretSource},
    secrets::SecretStore,
};
use http::{Method, Request, header};
use serde::Deserialize;
use std::{
    collections::BTreeMap,
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

/// `[service-auth]`: where and how the service obtains its access token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClientCredentialsConfig {
    /// The token endpoint (`token-url`), e.g. `https://auth.internal/oauth2/token`.
    pub token_url: String,
    /// This service's client id (`client-id`).
    pub client_id: String,
    /// Where the client secret comes from (`client-secret = { env = "..." }` or `{ file = ... }`).
    /// Exactly one of `client-secret` and `client-assertion` is set.
    #[serde(default)]
    pub client_secret: Option<SecretSource>,
    /// Workload identity instead of a secret (`client-assertion = { kind = "private-key-jwt",
    /// key = { file = ... } }` or `{ kind = "service-account-token", path = ... }`).
    #[serde(default)]
    pub client_assertion: Option<ClientAssertionConfig>,
    /// Scope to ask for (`scope`), space-separated.
    #[serde(default)]
    pub scope: Option<String>,
    /// Audience to ask for (`audience`; some providers need one).
    #[serde(default)]
    pub audience: Option<String>,
    /// Refresh this long before the token expires (`refresh-before-s`); short-lived tokens are
    /// refreshed at half their lifetime at the latest.
    #[serde(default = "default_refresh_before_s")]
    pub refresh_before_s: u64,
    /// Allow the token endpoint on a private or loopback address (`allow-private`, default on:
    /// identity providers are usually internal).
    #[serde(default = "default_true")]
    pub allow_private: bool,
}

fn default_refresh_before_s() -> u64 {
    60
}

fn default_true() -> bool {
    true
}

/// A token and when to stop using it.
#[derive(Clone)]
struct AccessToken {
    value: Arc<str>,
    refresh_at: Instant,
    expires_at: Instant,
}

/// The token endpoint's success answer (RFC 6749 §5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// Lifetime assumed when the endpoint does not say (`expires_in` is optional).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Longest a token request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a client secret read from a file is checked for rotation.
const ROTATION_CHECK: Duration = Duration::from_secs(1);
/// Access tokens remembered for scrubbing (the current one and a few before it).
const REMEMBERED_TOKENS: usize = 4;

/// Fetches, caches and refreshes the access token.
pub struct TokenSource {
    config: ClientCredentialsConfig,
    /// The client secret, re-read from its file when it rotates (see
    /// [`SecretStore::refresh`]): each token request uses the value in force. Empty when the
    /// service authenticates with a client assertion.
    client_secret: Arc<SecretStore>,
    /// The workload-identity assertion, when configured instead of a secret.
    assertion: Option<ClientAssertion>,
    /// The latest access tokens, for [`TokenSource::sensitive_values`].
    recent: Mutex<VecDeque<Arc<str>>>,
    gateway: Arc<EgressGateway>,
    egress: CallerPolicy,
    current: tokio::sync::Mutex<Option<AccessToken>>,
    fetches: AtomicU64,
}

impl TokenSource {
    /// Reads the client secret and checks the token URL.
    pub fn new(
        config: ClientCredentialsConfig,
        gateway: Arc<EgressGateway>,
        defaults: &CallPolicy,
    ) -> Result<Self, OutboundError> {
        let misconfigured = |message: String| OutboundError::Misconfigured(message);
        let (client_secret, assertion) = match (&config.client_secret, &config.client_assertion) {
            (Some(secret), None) => {
                let store = SecretStore::load(&BTreeMap::from([(
                    "client-secret".to_owned(),
                    secret.clone(),
                )]))
                .map_err(|error| misconfigured(format!("[service-auth] {error}")))?;
                let store = Arc::new(store);
                store.watch(ROTATION_CHECK);
                (store, None)
            }
            (None, Some(assertion)) => (
                Arc::new(SecretStore::default()),
                Some(
                    ClientAssertion::new(assertion.clone(), &config.client_id, &config.token_url)
                        .map_err(|error| misconfigured(format!("[service-auth] {error}")))?,
                ),
            ),
            _ => {
                return Err(misconfigured(
                    "[service-auth] set exactly one of client-secret and client-assertion"
                        .to_owned(),
                ));
            }
        };
        let egress = CallerPolicy::new(
            Caller::service("service-auth"),
            &[DestinationConfig {
                url: config.token_url.clone(),
                allow_private: config.allow_private,
                secrets: Vec::new(),
                cache_ttl: None,
                idempotency_header: None,
                policy: None,
            }],
            defaults,
        )
        .map_err(|error| misconfigured(format!("[service-auth] token-url: {error}")))?;
        Ok(Self {
            config,
            client_secret,
            assertion,
            recent: Mutex::new(VecDeque::new()),
            gateway,
            egress,
            current: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        })
    }

    /// `Basic base64(id:secret)` (RFC 6749 §2.3.1: id and secret are form-encoded first).
    fn basic_credentials(&self, secret: &str) -> String {
        let encode = |text: &[u8]| form_urlencoded::byte_serialize(text).collect::<String>();
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                encode(self.config.client_id.as_bytes()),
                encode(secret.as_bytes())
            ))
        )
    }

    /// How many tokens have been fetched from the endpoint.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Every value of this source that must never appear in a log line or a stored error: the
    /// client secret, the Basic credentials built from it and the latest access tokens.
    pub fn sensitive_values(&self) -> Vec<String> {
        let mut values = Vec::new();
        if let Some(secret) = self.client_secret.value("client-secret") {
            values.push(secret.to_string());
            if let Some(encoded) = self.basic_credentials(&secret).strip_prefix("Basic ") {
                values.push(encoded.to_owned());
            }
        }
        if let Some(assertion) = &self.assertion {
            values.extend(assertion.sensitive_values());
        }
        let recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        values.extend(recent.iter().map(|token| token.to_string()));
        values
    }

    /// A token valid now: the cached one, or a fresh one when it is due for refresh. While the
    /// endpoint fails, a cached token that has not expired yet is still used.
    pub async fn token(&self) -> Result<Arc<str>, OutboundError> {
        self.token_in_trace(None).await
    }

    /// [`Self::token`], a fetch carrying `traceparent` (the trace of the call that needs the
    /// token; a trace of its own when `None`).
    pub async fn token_in_trace(
        &self,
        traceparent: Option<&str>,
    ) -> Result<Arc<str>, OutboundError> {
        let mut current = self.current.lock().await;
        let now = Instant::now();
        if let Some(token) = current.as_ref().filter(|token| now < token.refresh_at) {
            return Ok(token.value.clone());
        }
        let traceparent = traceparent.map_or_else(
            || crate::trace_context::TraceContext::root().traceparent(),
            str::to_owned,
        );
        match self.fetch(&traceparent).await {
            Ok(token) => {
                let value = token.value.clone();
                self.remember(&value);
                *current = Some(token);
                Ok(value)
            }
            Err(error) => match current.as_ref().filter(|token| now < token.expires_at) {
                Some(token) => {
                    tracing::warn!(%error, "token refresh failed; using the current token until it expires");
                    Ok(token.value.clone())
                }
                None => Err(error),
            },
        }
    }

    /// Forgets `rejected` (an upstream answered 401 to it), so the next call fetches a new one.
    pub async fn invalidate(&self, rejected: &str) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|token| &*token.value == rejected)
        {
            *current = None;
        }
    }

    fn remember(&self, token: &Arc<str>) {
        let mut recent = self
            .recent
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if recent.len() == REMEMBERED_TOKENS {
            recent.pop_front();
        }
        recent.push_back(token.clone());
    }

    async fn fetch(&self, traceparent: &str) -> Result<AccessToken, OutboundError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("service_auth_token_fetches_total").increment(1);
        // With a client secret: HTTP Basic. With an assertion: the JWT in the form (RFC 7523).
        let (authorization, assertion) =
            match &self.assertion {
                Some(assertion) => (
                    None,
                    Some(assertion.assertion().map_err(|error| {
                        OutboundError::Token(format!("client assertion: {error}"))
                    })?),
                ),
                None => {
                    let secret = self.client_secret.value("client-secret").ok_or_else(|| {
                        OutboundError::Misconfigured(
                            "[service-auth] client-secret is not set".to_owned(),
                        )
                    })?;
                    (Some(self.basic_credentials(&secret)), None)
                }
            };
        let form = {
            // The serializer isn't `Send`; finish it before the first await.
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if let Some(assertion) = &assertion {
                form.append_pair("client_id", &self.config.client_id);
                form.append_pair("client_assertion_type", JWT_BEARER);
                form.append_pair("client_assertion", assertion);
            }
            if let Some(scope) = &self.config.scope {
                form.append_pair("scope", scope);
            }
            if let Some(audience) = &self.config.audience {
                form.append_pair("audience", audience);
            }
            form.finish()
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(&self.config.token_url)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::ACCEPT, "application/json")
            .header("traceparent", traceparent);
        if let Some(authorization) = authorization {
            request = request.header(header::AUTHORIZATION, authorization);
        }
        let request = request
            .body(Bytes::from(form))
            .map_err(|error| OutboundError::Misconfigured(format!("token request: {error}")))?;
        let started = Instant::now();
        let response = self
            .gateway
            .send(&self.egress, request, None, started + FETCH_TIMEOUT)
            .await
            .map_err(|error| OutboundError::Token(format!("token endpoint: {error}")))?;
        // Neither the body nor a value from it goes into an error: an answer may carry a token.
        if !response.status.is_success() {
            return Err(OutboundError::Token(describe_response(
                "token endpoint",
                response.status,
                response.body.len(),
            )));
        }
        let parsed: TokenResponse = serde_json::from_slice(&response.body).map_err(|error| {
            OutboundError::Token(format!(
                "token endpoint sent an unreadable answer ({} bytes; {:?} error at line {}, column {})",
                response.body.len(),
                error.classify(),
                error.line(),
                error.column()
            ))
        })?;
        if !parsed.token_type.eq_ignore_ascii_case("bearer") {
            return Err(OutboundError::Token(
                "token endpoint sent a token that is not a bearer token (the only type supported)"
                    .to_owned(),
            ));
        }
        if parsed.access_token.is_empty()
            || http::HeaderValue::from_str(&format!("Bearer {}", parsed.access_token)).is_err()
        {
            return Err(OutboundError::Token(
                "token endpoint sent an empty or malformed access token".to_owned(),
            ));
        }
        let lifetime = parsed
            .expires_in
            .map_or(DEFAULT_LIFETIME, Duration::from_secs);
        let refresh_in = lifetime
            .saturating_sub(Duration::from_secs(self.config.refresh_before_s))
            .max(lifetime / 2);
        Ok(AccessToken {
            value: parsed.access_token.into(),
            refresh_at: started + refresh_in,
            expires_at: started + lifetime,
        })
    }
}
