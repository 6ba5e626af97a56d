//! The gateway's metrics and log lines, kept out of the layers' logic. Names are stable:
//! `egress_requests_total`, `egress_denied_total{reason}`, `egress_cache_hits_total`,
//! `egress_latency_seconds`, `egress_breaker_state`, `egress_breaker_rejections_total`,
//! `egress_retries_total`, `egress_failures_total{kind}`; each labelled with the caller
//! (`plugin="<slot>"` or `service="<name>"`, see [`Caller::label`]) and, past the allowlist,
//! `destination="scheme://host:port"`.

use crate::{Caller, breaker::BreakerState, log_throttle};
use metrics::{Counter, Gauge, Histogram};

/// Logs a warning with the caller's name in its own field (`plugin = ...` or
/// `service = ...`), followed by the given fields and message.
macro_rules! warn_for {
    ($caller:expr, $($rest:tt)+) => {
        match $caller {
            $crate::Caller::Plugin(name) => tracing::warn!(plugin = &**name, $($rest)+),
            $crate::Caller::Service(name) => tracing::warn!(service = &**name, $($rest)+),
        }
    };
}
pub(crate) use warn_for;

/// The labels of a caller's destination.
pub(crate) fn labels(caller: &Caller, origin: &str) -> [(&'static str, String); 2] {
    [
        (caller.label(), caller.name().to_owned()),
        ("destination", origin.to_owned()),
    ]
}

/// A request the gateway refused itself; `reason` is `non-canonical`, `allowlist` or `secret`.
pub(crate) fn denied(caller: &Caller, reason: &'static str) {
    metrics::counter!(
        "egress_denied_total",
        caller.label() => caller.name().to_owned(),
        "reason" => reason
    )
    .increment(1);
}

/// The metrics of one caller's destination, registered once when the gateway first routes a
/// call there: building a metric's key (labels, allocations, a registry lookup) on every call
/// cost more than a cache hit's own work.
pub(crate) struct DestinationMetrics {
    requests: Counter,
    cache_hits: Counter,
    latency: Histogram,
    breaker_state: Gauge,
    breaker_rejections: Counter,
    retries: Counter,
}

impl DestinationMetrics {
    /// The handles for `caller`'s destination `origin` (from the recorder installed now).
    pub(crate) fn register(caller: &Caller, origin: &str) -> Self {
        let labels = labels(caller, origin);
        Self {
            requests: metrics::counter!("egress_requests_total", &labels),
            cache_hits: metrics::counter!("egress_cache_hits_total", &labels),
            latency: metrics::histogram!("egress_latency_seconds", &labels),
            breaker_state: metrics::gauge!("egress_breaker_state", &labels),
            breaker_rejections: metrics::counter!("egress_breaker_rejections_total", &labels),
            retries: metrics::counter!("egress_retries_total", &labels),
        }
    }

    /// A request admitted by the allowlist.
    pub(crate) fn admitted(&self) {
        self.requests.increment(1);
    }

    /// A response served from the cache.
    pub(crate) fn cache_hit(&self) {
        self.cache_hits.increment(1);
    }

    /// How long a request took, and the state its destination's breaker is left in.
    pub(crate) fn finished(&self, seconds: f64, state: BreakerState) {
        self.latency.record(seconds);
        self.breaker_state.set(match state {
            BreakerState::Closed => 0.0,
            BreakerState::Open => 1.0,
            BreakerState::HalfOpen => 2.0,
        });
    }

    /// A call the open breaker refused.
    pub(crate) fn breaker_rejected(&self) {
        self.breaker_rejections.increment(1);
    }

    /// A retry about to be made.
    pub(crate) fn retried(&self) {
        self.retries.increment(1);
    }
}

/// An upstream failure: counted always, logged the first time and then once per interval
/// with a count.
pub(crate) fn failed(
    caller: &Caller,
    origin: &str,
    kind: &'static str,
    error: &dyn std::fmt::Display,
) {
    let [caller_label, destination] = labels(caller, origin);
    metrics::counter!(
        "egress_failures_total",
        &[caller_label, destination, ("kind", kind.to_owned())]
    )
    .increment(1);
    log_throttle::warn_throttled(
        &format!("{} {origin} {kind}", caller.name()),
        |suppressed| {
            warn_for!(
                caller,
                destination = %origin,
                kind,
                %error,
                suppressed,
                "egress attempt failed ({suppressed} more like it in the last {:?} not logged)",
                log_throttle::INTERVAL
            );
        },
    );
}
