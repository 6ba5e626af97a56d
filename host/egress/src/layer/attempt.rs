//! Layer 8, one attempt: timeouts clamped (the caller's own options can only make them
//! shorter, and none outlives the deadline), one exchange on a pooled or new connection
//! ([`crate::client`]), the response size capped; its outcome recorded with the breaker.

use super::{Stage, Try};
use crate::{
    EgressError,
    cache::BufferedResponse,
    client::{self, Attempt, AttemptError, AttemptTimeouts},
    pool::ConnectionPool,
    telemetry,
};
use std::{sync::Arc, time::Duration};

/// A caller's own timeouts for one request (a guest's `wasi:http` `request-options`): each
/// only ever shortens the destination's configured one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimeoutOverrides {
    /// Connecting (TCP and TLS).
    pub connect: Option<Duration>,
    /// From the request sent to the response's head.
    pub first_byte: Option<Duration>,
    /// Between two reads of the body.
    pub between_bytes: Option<Duration>,
}

/// Makes one attempt over the shared TLS configuration and connection pool.
pub struct SendAttempt {
    tls: Arc<rustls::ClientConfig>,
    pool: ConnectionPool,
}

impl SendAttempt {
    /// Attempts with `tls` roots over `pool`.
    pub fn new(tls: Arc<rustls::ClientConfig>, pool: ConnectionPool) -> Self {
        Self { tls, pool }
    }

    /// The idle keep-alive connections.
    pub fn pool(&self) -> &ConnectionPool {
        &self.pool
    }
}

impl<'a> Stage<Try<'a>> for SendAttempt {
    async fn send(&self, attempt: Try<'a>) -> Result<BufferedResponse, EgressError> {
        let Try {
            caller,
            rule,
            request,
            overrides,
            deadline,
            addresses,
            permit,
        } = attempt;
        let policy = &rule.policy;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            permit.record(false);
            return Err(EgressError::DeadlineExceeded);
        }
        let overrides = overrides.unwrap_or_default();
        let clamp = |configured: Duration, requested: Option<Duration>| {
            requested
                .map_or(configured, |requested| requested.min(configured))
                .min(left)
        };
        let timeouts = AttemptTimeouts {
            connect: clamp(policy.connect_timeout, overrides.connect),
            first_byte: clamp(policy.first_byte_timeout, overrides.first_byte),
            between_bytes: clamp(policy.between_bytes_timeout, overrides.between_bytes),
        };
        let attempt = Attempt {
            use_tls: rule.destination.scheme == "https",
            host: &rule.destination.host,
            addresses: &addresses,
            request,
            timeouts,
            max_response_bytes: policy.max_response_bytes,
            tls: &self.tls,
            pool: &self.pool,
        };
        let outcome = tokio::time::timeout(left, client::send_once(attempt))
            .await
            .unwrap_or(Err(AttemptError::FirstByteTimeout));
        // A 5xx or 429 is an answer, but not a usable one: the breaker counts it as a failure.
        let usable = outcome.as_ref().is_ok_and(|response| {
            let status = response.status.as_u16();
            status < 500 && status != 429
        });
        permit.record(usable);
        if let Err(error) = &outcome {
            telemetry::failed(caller, rule.destination.origin(), error.kind(), error);
        }
        Ok(outcome?)
    }
}
