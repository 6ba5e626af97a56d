//! Layer 2, metrics: counts every admitted request and records its latency and the state its
//! destination's breaker is left in, whatever the inner layers made of it.

use super::{Routed, Stage};
use crate::{EgressError, cache::BufferedResponse};
use std::time::Instant;

/// Measures the layers inside it, with the metrics of the destination the call was routed to.
pub struct Metered<S> {
    inner: S,
}

impl<S> Metered<S> {
    /// Measures `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<'a, S: Stage<Routed<'a>>> Stage<Routed<'a>> for Metered<S> {
    async fn send(&self, routed: Routed<'a>) -> Result<BufferedResponse, EgressError> {
        let started = Instant::now();
        let destination = routed.destination.clone();
        destination.metrics.admitted();
        let result = self.inner.send(routed).await;
        destination
            .metrics
            .finished(started.elapsed().as_secs_f64(), destination.breaker.state());
        result
    }
}
