//! The egress gateway: the only way out for plugins, and the way the service's own clients
//! call internal services. A caller is named by its [`CallerPolicy`] (who calls, which
//! destinations, which secrets); every request goes through one stack of small layers
//! ([`layer`]), composed once in [`layer::Stack::new`], outermost first:
//!
//! 1. **allowlist** ([`layer::allowlist`]): only canonical URLs ([`canonical`]), and only to
//!    one of the caller's destinations (scheme + host + port + path prefix, [`allowlist`]);
//!    anything else is refused ([`error::Denial`]);
//! 2. **metrics** ([`layer::metered`]): requests, latency and breaker state per destination
//!    ([`telemetry`]);
//! 3. **secrets** ([`layer::secrets`]): the request size cap, `{{secret:NAME}}` placeholders
//!    substituted only for destinations bound to `NAME` ([`secrets`]), the `Host` header from
//!    the checked origin; on the way back, content-encoded answers refused and every secret
//!    scrubbed ([`redact`]);
//! 4. **cache + single-flight** ([`layer::cache`], [`cache`]) for GETs without credentials;
//! 5. **destination guard** ([`layer::destination_guard`]): the circuit breaker ([`breaker`]),
//!    asked first, so an open breaker answers before any lookup or wait; a concurrency limit;
//!    the retry budget;
//! 6. **address guard** (SSRF, [`layer::address_guard`], [`address_guard`]): resolve once
//!    within the connect timeout, refuse non-public addresses unless the destination allows
//!    them; a failed or hung lookup counts as a breaker failure, a refusal does not;
//! 7. **retry** ([`layer::retry`]): a [`layer::retry::RetryPolicy`] decides (safe requests,
//!    transient failures, full-jitter backoff, [`retry`]); each retry must fit before the
//!    deadline, be paid from the retry budget and get a fresh breaker permit;
//! 8. **attempt** ([`layer::attempt`], [`client`]): timeouts (connect, first byte, between
//!    bytes; the caller's own can only make them shorter), pooled connections ([`pool`]), a
//!    response size cap; the outcome is recorded with the breaker.
//!
//! Errors are typed ([`EgressError`]): callers match on variants, never on text.

pub mod address_guard;
pub mod allowlist;
pub mod breaker;
pub mod cache;
pub mod caller;
pub mod canonical;
pub mod client;
pub mod config;
pub mod error;
pub mod gateway;
#[cfg(test)]
mod http2_tests;
pub mod layer;
pub mod lock;
pub mod log_throttle;
pub mod pool;
pub mod redact;
pub mod retry;
pub mod secrets;
pub mod telemetry;
pub mod tls;
pub mod trace;

pub use self::{
    caller::{Caller, CallerPolicy, Rule},
    error::{Denial, EgressError, ResolveError, SetupError},
    gateway::EgressGateway,
    layer::TimeoutOverrides,
};
