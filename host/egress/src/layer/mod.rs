//! The gateway as a stack of small layers in the spirit of tower: each one concern, each
//! wrapping an inner [`Stage`], composed once in [`Stack::new`] in the order documented in the
//! crate root. A layer may change the request type as it learns more about the call: a
//! [`Call`] becomes [`Routed`] at the allowlist, [`Guarded`] at the destination guard,
//! [`Resolved`] at the address guard and one [`Try`] per attempt at the retry layer.

pub mod address_guard;
pub mod allowlist;
pub mod attempt;
pub mod cache;
pub mod destination_guard;
pub mod metered;
pub mod retry;
pub mod secrets;

use crate::{
    Caller, CallerPolicy, EgressError, Rule, breaker::Permit, cache::BufferedResponse,
    config::EgressConfig, pool::ConnectionPool, secrets::SecretStore,
};
use bytes::Bytes;
use http::Request;
use std::{
    future::Future,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

pub use self::{attempt::TimeoutOverrides, destination_guard::DestinationState};

/// One step of the gateway: takes a request of type `R`, answers with a buffered response.
pub trait Stage<R>: Send + Sync {
    /// Handles `request`, usually by calling the inner stage.
    fn send(
        &self,
        request: R,
    ) -> impl Future<Output = Result<BufferedResponse, EgressError>> + Send;
}

/// A request as it enters the gateway.
pub struct Call<'a> {
    /// Who calls and what it may reach.
    pub policy: &'a CallerPolicy,
    /// The request, body buffered.
    pub request: Request<Bytes>,
    /// The caller's own timeouts (a guest's `request-options`): only ever shorter.
    pub overrides: Option<TimeoutOverrides>,
    /// When the caller stops waiting.
    pub deadline: Instant,
}

/// A request the allowlist admitted, with the rule it matched.
pub struct Routed<'a> {
    /// Who calls.
    pub caller: &'a Caller,
    /// The destination it matched.
    pub rule: &'a Rule,
    /// That destination's state for this caller: breaker, budget, limits, metrics.
    pub destination: Arc<DestinationState>,
    /// The request, canonical.
    pub request: Request<Bytes>,
    /// See [`Call::overrides`].
    pub overrides: Option<TimeoutOverrides>,
    /// See [`Call::deadline`].
    pub deadline: Instant,
    /// Set by the secrets layer when a secret was substituted: such a request is never cached.
    pub carries_secrets: bool,
}

impl Routed<'_> {
    /// `scheme://host:port` of the destination.
    pub fn origin(&self) -> &str {
        self.rule.destination.origin()
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// A request the destination guard let through: its breaker permit (for the lookup and the
/// first attempt) and the destination's state.
pub struct Guarded<'a> {
    /// The request.
    pub routed: Routed<'a>,
    /// Breaker and retry budget of the destination.
    pub destination: Arc<DestinationState>,
    /// The breaker's permission for the address lookup and the first attempt.
    pub permit: Permit,
}

/// A request whose destination resolved to addresses it may reach.
pub struct Resolved<'a> {
    /// The request.
    pub routed: Routed<'a>,
    /// Breaker and retry budget of the destination.
    pub destination: Arc<DestinationState>,
    /// The breaker's permission for the first attempt.
    pub permit: Permit,
    /// The checked addresses: attempts connect to exactly these.
    pub addresses: Arc<[SocketAddr]>,
}

/// One attempt of a request.
pub struct Try<'a> {
    /// Who calls.
    pub caller: &'a Caller,
    /// The destination.
    pub rule: &'a Rule,
    /// This attempt's copy of the request (the body is shared).
    pub request: Request<Bytes>,
    /// See [`Call::overrides`].
    pub overrides: Option<TimeoutOverrides>,
    /// See [`Call::deadline`].
    pub deadline: Instant,
    /// The checked addresses.
    pub addresses: Arc<[SocketAddr]>,
    /// The breaker's permission for this attempt; the attempt records its outcome.
    pub permit: Permit,
}

/// The whole stack, outermost first.
pub type Layers = allowlist::Allowlist<
    metered::Metered<
        secrets::Secrets<
            cache::Cache<
                destination_guard::DestinationGuard<
                    address_guard::AddressGuard<
                        retry::Retry<retry::JitteredRetry, attempt::SendAttempt>,
                    >,
                >,
            >,
        >,
    >,
>;

/// The composed stack and the state the gateway reports on.
pub struct Stack {
    /// The layers, outermost first.
    pub layers: Layers,
    /// Per-destination state (breakers, budgets, metrics), which the allowlist routes calls to.
    pub destinations: Arc<destination_guard::Destinations>,
}

impl Stack {
    /// Composes the layers, once, in the documented order: allowlist → metrics → secrets →
    /// cache + single-flight → destination guard → address guard → retry → attempt.
    pub fn new(
        config: &EgressConfig,
        secrets: Arc<SecretStore>,
        pool: ConnectionPool,
        tls: Arc<rustls::ClientConfig>,
    ) -> Self {
        let destinations = Arc::new(destination_guard::Destinations::default());
        let attempt = attempt::SendAttempt::new(tls, pool);
        let retry = retry::Retry::new(retry::JitteredRetry, attempt);
        let address_guard = address_guard::AddressGuard::new(
            crate::address_guard::NameResolver::new(&config.dns_servers),
            retry,
        );
        let destination_guard = destination_guard::DestinationGuard::new(address_guard);
        let cache = cache::Cache::new(
            crate::cache::new_cache(config.cache_bytes),
            destination_guard,
        );
        let secrets = secrets::Secrets::new(secrets, config.max_request_bytes, cache);
        let metered = metered::Metered::new(secrets);
        Self {
            layers: allowlist::Allowlist::new(destinations.clone(), metered),
            destinations,
        }
    }
}

#[cfg(test)]
mod tests;
