//! Layer 2, metrics: counts every admitted request and records its latency and the state its
//! destination's breaker is left in, whatever the inner layers made of it.

use super::{Routed, Stage, destination_guard::Destinations};
use crate::{EgressError, cache::BufferedResponse, telemetry};
use std::{sync::Arc, time::Instant};

/// Measures the layers inside it.
pub struct Metered<S> {
    destinations: Arc<Destinations>,
    inner: S,
}

impl<S> Metered<S> {
    /// Measures `inner`; reads breaker states from `destinations`.
    pub fn new(destinations: Arc<Destinations>, inner: S) -> Self {
        Self {
            destinations,
            inner,
        }
    }
}

impl<'a, S: Stage<Routed<'a>>> Stage<Routed<'a>> for Metered<S> {
    async fn send(&self, routed: Routed<'a>) -> Result<BufferedResponse, EgressError> {
        let started = Instant::now();
        let labels = telemetry::labels(routed.caller, &routed.origin());
        let destination = self.destinations.state_for(routed.caller, routed.rule);
        telemetry::admitted(&labels);
        let result = self.inner.send(routed).await;
        telemetry::finished(
            &labels,
            started.elapsed().as_secs_f64(),
            destination.breaker.state(),
        );
        result
    }
}
