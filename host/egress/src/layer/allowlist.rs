//! Layer 1, the allowlist: only canonical requests ([`crate::canonical`]) to one of the
//! caller's destinations go further; anything else is refused ([`Denial`]), logged with the
//! caller's name and counted under `egress_denied_total`.

use super::{Call, Routed, Stage, destination_guard::Destinations};
use crate::{
    EgressError, cache::BufferedResponse, canonical, error::Denial, telemetry, telemetry::warn_for,
};
use std::sync::Arc;

/// Matches a [`Call`] against its caller's policy, and routes it to that destination's state.
pub struct Allowlist<S> {
    destinations: Arc<Destinations>,
    inner: S,
}

impl<S> Allowlist<S> {
    /// The allowlist in front of `inner`, with the per-destination states in `destinations`.
    pub fn new(destinations: Arc<Destinations>, inner: S) -> Self {
        Self {
            destinations,
            inner,
        }
    }
}

impl<'a, S: Stage<Routed<'a>>> Stage<Call<'a>> for Allowlist<S> {
    async fn send(&self, call: Call<'a>) -> Result<BufferedResponse, EgressError> {
        let caller = &call.policy.caller;
        let method = call.request.method().clone();
        // Only canonical URLs are matched, and then sent exactly as matched.
        let (request, origin) = canonical::canonicalize(call.request).map_err(|refusal| {
            warn_for!(caller, %method, %refusal, "egress denied: non-canonical request");
            telemetry::denied(caller, "non-canonical");
            Denial::NonCanonical(refusal)
        })?;
        let Some(rule) = call.policy.rule_for_checked(&origin, request.uri().path()) else {
            let target = format!("{method} {}", redact_query(request.uri()));
            warn_for!(caller, %target, "egress denied: destination not on the caller's allowlist");
            telemetry::denied(caller, "allowlist");
            return Err(Denial::NotAllowed {
                target,
                caller: caller.to_string(),
            }
            .into());
        };
        self.inner
            .send(Routed {
                caller,
                rule,
                destination: self.destinations.state_for(caller, rule),
                request,
                overrides: call.overrides,
                deadline: call.deadline,
                carries_secrets: false,
            })
            .await
    }
}

/// The URI without its query (queries can carry tokens); for logs.
fn redact_query(uri: &http::Uri) -> String {
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(authority)) => format!("{scheme}://{authority}{}", uri.path()),
        _ => uri.path().to_owned(),
    }
}
