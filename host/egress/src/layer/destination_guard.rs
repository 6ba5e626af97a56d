//! Layer 5, the destination guard: per caller and destination, a circuit breaker (asked
//! first, so an open breaker answers before any lookup or wait), a concurrency limit (waited
//! for no longer than the deadline) and the retry budget the retry layer draws on.

use super::{Guarded, Routed, Stage};
use crate::{
    Caller, EgressError, Rule,
    breaker::{BreakerState, CircuitBreaker, Permit},
    cache::BufferedResponse,
    lock::lock,
    telemetry::DestinationMetrics,
};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::Semaphore;
use tower::retry::budget::TpsBudget;

/// Per-destination state of one caller: breaker, retry budget, concurrency limit.
pub struct DestinationState {
    /// Who calls, for logs and metrics.
    pub caller: Caller,
    /// `scheme://host:port`.
    pub origin: String,
    /// The destination's circuit breaker.
    pub breaker: CircuitBreaker,
    /// Retries may only spend what requests deposited.
    pub budget: TpsBudget,
    /// Its metrics, registered once.
    pub(crate) metrics: DestinationMetrics,
    slots: Semaphore,
}

impl DestinationState {
    /// Asks the breaker for a permit; an open breaker fails fast, counted.
    pub fn admit(&self) -> Result<Permit, EgressError> {
        self.breaker.try_acquire().map_err(|_| {
            self.metrics.breaker_rejected();
            EgressError::BreakerOpen {
                origin: self.origin.clone(),
            }
        })
    }
}

/// The state of every (caller, destination) called so far: by caller, then by origin, so that
/// finding an existing state (every call) allocates nothing.
#[derive(Default)]
pub struct Destinations {
    states: Mutex<HashMap<Caller, HashMap<String, Arc<DestinationState>>>>,
}

impl Destinations {
    /// The state of `caller`'s destination `rule`, created on first use from its policy.
    pub fn state_for(&self, caller: &Caller, rule: &Rule) -> Arc<DestinationState> {
        let origin = rule.destination.origin();
        let mut states = lock(&self.states);
        if let Some(state) = states
            .get(caller)
            .and_then(|by_origin| by_origin.get(origin))
        {
            return state.clone();
        }
        let policy = &rule.policy;
        let state = Arc::new(DestinationState {
            breaker: CircuitBreaker::new(
                format!("{} {origin}", caller.name()),
                policy.breaker.clone(),
            ),
            budget: TpsBudget::new(
                Duration::from_secs(10),
                policy.retry_budget_min_per_sec,
                policy.retry_budget_percent,
            ),
            metrics: DestinationMetrics::register(caller, origin),
            slots: Semaphore::new(policy.max_concurrency.max(1)),
            caller: caller.clone(),
            origin: origin.to_owned(),
        });
        states
            .entry(caller.clone())
            .or_default()
            .insert(origin.to_owned(), state.clone());
        state
    }

    /// The breaker state of `caller`'s destination `origin`, if it has been called.
    pub fn breaker_state(&self, caller: &Caller, origin: &str) -> Option<BreakerState> {
        lock(&self.states)
            .get(caller)
            .and_then(|by_origin| by_origin.get(origin))
            .map(|state| state.breaker.state())
    }
}

/// Breaker first, then a concurrency slot held for the whole call (lookup and retries), on
/// the state the allowlist routed the call to ([`Routed::destination`]).
pub struct DestinationGuard<S> {
    inner: S,
}

impl<S> DestinationGuard<S> {
    /// Guards `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<'a, S: Stage<Guarded<'a>>> Stage<Routed<'a>> for DestinationGuard<S> {
    async fn send(&self, routed: Routed<'a>) -> Result<BufferedResponse, EgressError> {
        let destination = routed.destination.clone();
        // Whatever ends the call from here without a usable answer is a recorded failure:
        // a full concurrency limit, and a cancellation by the deadline, through the permit's
        // drop.
        let permit = destination.admit()?;
        let _slot = tokio::time::timeout(routed.remaining(), destination.slots.acquire())
            .await
            .map_err(|_| EgressError::DeadlineExceeded)?
            .map_err(|_| EgressError::DeadlineExceeded)?;
        self.inner
            .send(Guarded {
                routed,
                destination: destination.clone(),
                permit,
            })
            .await
    }
}
