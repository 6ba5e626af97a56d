//! The service's own outbound calls to internal services (Notification Service, Configuration
//! Service): addressed by logical name ([`discovery`]), authenticated with a client-credentials
//! token ([`token`]), and sent through the same egress gateway the plugins use — so they get the
//! same timeouts, retries with full jitter and a budget, circuit breakers and response caps.
//!
//! The service's gateway is its own instance (`[outbound]`): its breakers, secrets and cache are
//! separate from the plugins'.
//!
//! What a failed call may say in a log line or a stored error is decided in [`scrub`]: status
//! and size of an answer, never its body, and never a token or secret the service knows.

pub mod assertion;
pub mod discovery;
pub mod scrub;
pub mod token;

use self::{
    discovery::{Discovery, DiscoveryError},
    scrub::Scrubber,
    token::TokenSource,
};
use bytes::Bytes;
use egress::{
    Caller, CallerPolicy, EgressError, EgressGateway, cache::BufferedResponse,
    config::DestinationConfig,
};
use http::{HeaderValue, Method, Request, StatusCode, header};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// Why an internal call did not produce a response.
#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboundError {
    #[error("{0}")]
    Misconfigured(String),
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    #[error("access token: {0}")]
    Token(String),
    #[error("{service}: {source}")]
    Egress {
        service: String,
        #[source]
        source: EgressError,
    },
}

/// Header carrying the idempotency key of non-idempotent calls; the gateway may retry requests
/// that carry it.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// One call to an internal service.
#[derive(Debug, Clone)]
pub struct InternalRequest<'a> {
    /// Logical service name, e.g. `notification-service`.
    pub service: &'a str,
    pub method: Method,
    /// Path (and query) under the service's base URL, starting with `/`.
    pub path: &'a str,
    /// JSON body, if any.
    pub json: Option<Bytes>,
    /// Sent as `Idempotency-Key`; makes a POST safe to retry.
    pub idempotency_key: Option<&'a str>,
    /// Further headers (`traceparent`, CloudEvents `ce-*`); a `content-type` here replaces
    /// the default `application/json`.
    pub headers: Vec<(&'static str, String)>,
    /// Total time for the call, retries included.
    pub timeout: Duration,
}

/// Calls internal services by name.
pub struct InternalClient {
    gateway: Arc<EgressGateway>,
    discovery: Discovery,
    auth: Option<TokenSource>,
    /// The gateway's configured secret values (`[outbound] secrets`), for [`Self::scrubber`].
    secret_values: Vec<String>,
}

impl InternalClient {
    /// A client over `gateway`, resolving through `discovery`, authenticating with `auth`.
    pub fn new(
        gateway: Arc<EgressGateway>,
        discovery: Discovery,
        auth: Option<TokenSource>,
    ) -> Self {
        Self {
            gateway,
            discovery,
            auth,
            secret_values: Vec::new(),
        }
    }

    /// Also scrub `values` (the `[outbound]` gateway's secrets) from what [`Self::scrubber`]
    /// cleans.
    pub fn with_secret_values(mut self, values: impl IntoIterator<Item = String>) -> Self {
        self.secret_values.extend(values);
        self
    }

    /// How long an internal destination's circuit breaker stays open before it lets probes
    /// through (`[outbound] defaults.breaker.open-ms`).
    pub fn breaker_open_for(&self) -> Duration {
        self.gateway.defaults().breaker.open_for
    }

    /// The circuit-breaker settings of internal destinations (`[outbound] defaults.breaker`),
    /// for sinks that do not call through the gateway (NATS).
    pub fn breaker_config(&self) -> egress::config::BreakerConfig {
        self.gateway.defaults().breaker.clone()
    }

    /// A scrubber for every sensitive value this client knows now: the access tokens, the
    /// client secret and the gateway's secrets.
    pub fn scrubber(&self) -> Scrubber {
        let tokens = self
            .auth
            .as_ref()
            .map(TokenSource::sensitive_values)
            .unwrap_or_default();
        Scrubber::new(tokens).with(&self.secret_values)
    }

    /// The token source, when service authentication is configured.
    pub fn auth(&self) -> Option<&TokenSource> {
        self.auth.as_ref()
    }

    /// Sends `call`, with a bearer token when configured; on a 401 the token is refreshed once
    /// and the call repeated once.
    pub async fn send(
        &self,
        call: &InternalRequest<'_>,
    ) -> Result<BufferedResponse, OutboundError> {
        let deadline = Instant::now() + call.timeout;
        let resolved = tokio::time::timeout(call.timeout, self.discovery.resolve(call.service))
            .await
            .map_err(|_| DiscoveryError::Lookup {
                service: call.service.to_owned(),
                name: call.service.to_owned(),
                message: "no answer within the call's timeout".to_owned(),
            })??;
        let egress = CallerPolicy::new(
            Caller::service(call.service),
            &[DestinationConfig {
                url: format!("{}/", resolved.base_url),
                // Internal services live on private networks by definition.
                allow_private: true,
                secrets: Vec::new(),
                cache_ttl: None,
                idempotency_header: Some(IDEMPOTENCY_HEADER.to_owned()),
                policy: None,
            }],
            self.gateway.defaults(),
        )
        .map_err(|error| {
            OutboundError::Misconfigured(format!("service `{}`: {error}", call.service))
        })?;
        let url = format!("{}{}", resolved.base_url, call.path);
        // The call's trace: the one it brings (an event's), the request's being served, or a
        // trace of its own.
        let traceparent = call
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
            .map(|(_, value)| value.clone())
            .or_else(egress::trace::current)
            .unwrap_or_else(|| crate::trace_context::TraceContext::root().traceparent());
        let mut refreshed = false;
        loop {
            let token = match &self.auth {
                Some(auth) => Some(auth.token_in_trace(Some(&traceparent)).await?),
                None => None,
            };
            let request = build_request(call, &url, token.as_deref(), &traceparent)?;
            let response = self
                .gateway
                .send(&egress, request, None, deadline)
                .await
                .map_err(|source| OutboundError::Egress {
                    service: call.service.to_owned(),
                    source,
                })?;
            match (&self.auth, token) {
                (Some(auth), Some(token))
                    if response.status == StatusCode::UNAUTHORIZED && !refreshed =>
                {
                    tracing::info!(
                        service = call.service,
                        "401 from an internal service: refreshing the access token once"
                    );
                    auth.invalidate(&token).await;
                    refreshed = true;
                }
                _ => return Ok(response),
            }
        }
    }
}

fn build_request(
    call: &InternalRequest<'_>,
    url: &str,
    token: Option<&str>,
    traceparent: &str,
) -> Result<Request<Bytes>, OutboundError> {
    let mut builder = Request::builder()
        .method(call.method.clone())
        .uri(url)
        .header(header::ACCEPT, "application/json")
        .header("traceparent", traceparent);
    let own_content_type = call
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("content-type"));
    if call.json.is_some() && !own_content_type {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    for (name, value) in &call.headers {
        if !name.eq_ignore_ascii_case("traceparent") {
            builder = builder.header(*name, value.as_str());
        }
    }
    if let Some(key) = call.idempotency_key {
        builder = builder.header(IDEMPOTENCY_HEADER, key);
    }
    if let Some(token) = token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| OutboundError::Token("access token is not a header value".to_owned()))?;
        value.set_sensitive(true);
        builder = builder.header(header::AUTHORIZATION, value);
    }
    builder
        .body(call.json.clone().unwrap_or_default())
        .map_err(|error| {
            OutboundError::Misconfigured(format!("service `{}`: {url}: {error}", call.service))
        })
}
