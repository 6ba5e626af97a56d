//! One event offered to every sink that has not taken it yet, and what that came to: the
//! outcome to record, the counters, the log lines.
//!
//! - **A real attempt and a short-circuit are different things.** A sink whose destination's
//!   circuit breaker is open is *deferred*: nothing was sent, no attempt is used up, no failure
//!   is counted (`outbox_deliveries_deferred_total{sink}` is), and it is logged once when the
//!   sink starts being deferred and once when deliveries reach it again, not once per event.
//! - **No token in a log line or a stored error.** Sinks describe a failed answer by status and
//!   size; every message is then scrubbed of the event's tokens and links and of the client's
//!   access tokens and secrets ([`crate::outbound::scrub`]).
//! - **Bounded.** Each sink delivery is cut off shortly after `delivery-timeout-ms`, whatever
//!   the sink does, so a delivery never outlives its lease.

use super::{
    EventsConfig,
    sinks::{DeliveryError, Sink},
};
use crate::{
    outbound::{
        InternalClient,
        scrub::{Scrubber, event_secrets},
    },
    store::{DeliveryFailure, DeliveryOutcome, DueEvent, OutboxEvent, now_micros},
};
use egress::retry::full_jitter_delay;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

/// Added to `delivery-timeout-ms` before a sink delivery is cut off from outside: the client's
/// own deadline is the same timeout, and its error says more than ours.
const TIMEOUT_GRACE: Duration = Duration::from_millis(250);

/// A sink and whether its deliveries are being deferred by an open breaker.
struct TrackedSink {
    sink: Sink,
    deferring: AtomicBool,
}

impl TrackedSink {
    /// Notes a short-circuit; logs only when the sink was not being deferred already.
    fn deferred(&self, origin: &str) {
        metrics::counter!("outbox_deliveries_deferred_total", "sink" => self.sink.name().to_owned())
            .increment(1);
        if !self.deferring.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                sink = self.sink.name(),
                %origin,
                "circuit breaker open: deliveries to this sink are deferred (nothing sent, no attempt used) until it lets calls through"
            );
        }
    }

    /// Notes that a delivery reached the sink (whatever it answered).
    fn reached(&self) {
        if self.deferring.swap(false, Ordering::Relaxed) {
            tracing::info!(
                sink = self.sink.name(),
                "circuit breaker lets calls through: deliveries to this sink are attempted again"
            );
        }
    }
}

/// Delivers single events; shared by the relay's delivery tasks.
pub(super) struct Deliverer {
    sinks: Vec<TrackedSink>,
    client: Arc<InternalClient>,
    config: EventsConfig,
}

impl Deliverer {
    pub(super) fn new(config: EventsConfig, client: Arc<InternalClient>) -> Self {
        let sinks = config
            .sinks
            .iter()
            .cloned()
            .map(|sink| TrackedSink {
                sink: Sink::new(
                    sink,
                    client.clone(),
                    config.source.clone(),
                    Duration::from_millis(config.delivery_timeout_ms),
                ),
                deferring: AtomicBool::new(false),
            })
            .collect();
        Self {
            sinks,
            client,
            config,
        }
    }

    /// Every sink's start-up check (a NATS sink's stream), each given `wait` to reach its
    /// server.
    pub(super) async fn prepare(&self, wait: Duration) -> anyhow::Result<()> {
        let horizon = self.config.retry_horizon();
        for tracked in &self.sinks {
            tracked.sink.prepare(horizon, wait).await?;
        }
        Ok(())
    }

    /// The time one sink delivery may take.
    fn sink_timeout(&self) -> Duration {
        Duration::from_millis(self.config.delivery_timeout_ms)
    }

    /// The longest one event's delivery can take: every sink running into its timeout.
    pub(super) fn longest_delivery(&self) -> Duration {
        (self.sink_timeout() + TIMEOUT_GRACE) * (self.sinks.len() as u32).max(1)
    }

    /// Offers `due` to every sink that has not taken it yet.
    pub(super) async fn deliver(&self, due: DueEvent) -> DeliveryOutcome {
        let event = &due.event;
        let mut done = due.sinks_done;
        let mut failed = Vec::new();
        let mut deferred = Vec::new();
        for tracked in &self.sinks {
            let name = tracked.sink.name();
            if done.iter().any(|taken| taken == name) {
                continue;
            }
            let started = Instant::now();
            match self.deliver_to(&tracked.sink, event).await {
                Ok(()) => {
                    tracked.reached();
                    done.push(name.to_owned());
                }
                Err(DeliveryError::Deferred { origin }) => {
                    tracked.deferred(&origin);
                    deferred.push(format!(
                        "{name}: deferred, circuit breaker open for {origin}"
                    ));
                    continue;
                }
                Err(DeliveryError::Failed(message)) => {
                    tracked.reached();
                    metrics::counter!(
                        "outbox_delivery_failures_total",
                        "type" => event.event_type.clone(),
                        "sink" => name.to_owned()
                    )
                    .increment(1);
                    failed.push(format!("{name}: {message}"));
                }
            }
            metrics::histogram!("outbox_delivery_seconds", "sink" => name.to_owned())
                .record(started.elapsed().as_secs_f64());
        }
        if failed.is_empty() && deferred.is_empty() {
            metrics::counter!("outbox_delivered_total", "type" => event.event_type.clone())
                .increment(1);
            return DeliveryOutcome::Delivered {
                id: event.id.clone(),
                sinks_done: done,
            };
        }
        let scrubber = self.scrubber_for(event);
        let error = scrubber.scrub(&[failed.as_slice(), deferred.as_slice()].concat().join("; "));
        // Only a sink that was actually tried uses up an attempt.
        let attempted = !failed.is_empty();
        let attempts = due.attempts + i64::from(attempted);
        let dead = attempted && attempts >= i64::from(self.config.max_attempts.max(1));
        let delay = if attempted {
            full_jitter_delay(
                Duration::from_millis(self.config.retry_base_ms),
                Duration::from_millis(self.config.retry_cap_ms),
                attempts.saturating_sub(1).clamp(0, 30) as u32,
            )
        } else {
            self.deferral_delay()
        };
        let retry_in_ms = delay.as_millis() as u64;
        if dead {
            tracing::error!(event = %event.id, r#type = %event.event_type, attempts, %error, "event moved to the dead letters");
            metrics::counter!("outbox_dead_lettered_total", "type" => event.event_type.clone())
                .increment(1);
        } else if attempted {
            tracing::warn!(event = %event.id, r#type = %event.event_type, attempts, retry_in_ms, %error, "event delivery failed; will retry");
        } else {
            // Logged per sink when its breaker opens; per event only at debug level.
            tracing::debug!(event = %event.id, retry_in_ms, %error, "event delivery deferred");
        }
        DeliveryOutcome::Failed(DeliveryFailure {
            id: event.id.clone(),
            attempts,
            next_attempt_at: now_micros() + delay.as_micros() as i64,
            error,
            sinks_done: done,
            dead,
        })
    }

    /// When to look at an event again that only an open breaker held back: a random time
    /// within half the breaker's open time, so that while it is open each pending event is
    /// looked at a few times per open period (not every retry-base), the first to come back
    /// after it half-opens are its probes, and the rest follow soon after it closes.
    fn deferral_delay(&self) -> Duration {
        let half_open_time = self.client.breaker_open_for().as_millis() as u64 / 2;
        let floor = self.config.retry_base_ms.min(half_open_time);
        Duration::from_millis(fastrand::u64(floor..=half_open_time.max(floor)))
    }

    /// One sink, cut off shortly after the delivery timeout whatever the sink does.
    async fn deliver_to(&self, sink: &Sink, event: &OutboxEvent) -> Result<(), DeliveryError> {
        let timeout = self.sink_timeout();
        tokio::time::timeout(timeout + TIMEOUT_GRACE, sink.deliver(event, timeout))
            .await
            .unwrap_or_else(|_| {
                Err(DeliveryError::Failed(format!(
                    "no answer within the delivery timeout ({} ms)",
                    timeout.as_millis()
                )))
            })
    }

    /// Everything sensitive a message about `event` could contain.
    fn scrubber_for(&self, event: &OutboxEvent) -> Scrubber {
        self.client.scrubber().with(event_secrets(&event.payload))
    }
}
