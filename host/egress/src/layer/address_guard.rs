//! Layer 6, the address guard (SSRF): the destination's name is resolved once, within the
//! connect timeout, and only addresses the destination may reach are kept; attempts connect to
//! exactly these. A lookup that fails or hangs is an upstream failure the breaker counts; a
//! refusal is the gateway's own and counts for nothing.

use super::{Guarded, Resolved, Stage};
use crate::{
    EgressError,
    address_guard::{AddressError, NameResolver, resolve_checked},
    cache::BufferedResponse,
    error::ResolveError,
    telemetry::{self, warn_for},
};

/// Resolves and checks the destination's addresses.
pub struct AddressGuard<S> {
    resolver: NameResolver,
    inner: S,
}

impl<S> AddressGuard<S> {
    /// Resolves with `resolver` in front of `inner`.
    pub fn new(resolver: NameResolver, inner: S) -> Self {
        Self { resolver, inner }
    }
}

impl<'a, S: Stage<Resolved<'a>>> Stage<Guarded<'a>> for AddressGuard<S> {
    async fn send(&self, guarded: Guarded<'a>) -> Result<BufferedResponse, EgressError> {
        let Guarded {
            routed,
            destination,
            permit,
        } = guarded;
        let rule = routed.rule;
        let origin = &destination.origin;
        // A resolver that never answers must not hold the call: the lookup gets the connect
        // timeout.
        let budget = rule.policy.connect_timeout.min(routed.remaining());
        let lookup = resolve_checked(
            &self.resolver,
            &rule.destination.host,
            rule.destination.port,
            rule.config.allow_private,
        );
        let addresses = match tokio::time::timeout(budget, lookup).await {
            Ok(Ok(addresses)) => addresses,
            Ok(Err(error @ AddressError::Refused { .. })) => {
                permit.discard();
                warn_for!(routed.caller, destination = %origin, %error, "egress refused");
                return Err(EgressError::AddressRefused(error));
            }
            Ok(Err(error)) => {
                permit.record(false);
                telemetry::failed(routed.caller, origin, "unresolvable", &error);
                return Err(ResolveError::Failed(error).into());
            }
            Err(_) => {
                permit.record(false);
                let error = ResolveError::Timeout {
                    host: rule.destination.host.clone(),
                    budget,
                };
                telemetry::failed(routed.caller, origin, "resolve-timeout", &error);
                return Err(error.into());
            }
        };
        self.inner
            .send(Resolved {
                routed,
                destination,
                permit,
                addresses: addresses.into(),
            })
            .await
    }
}
