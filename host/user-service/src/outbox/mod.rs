//! The outbox relay: delivers the events that state changes wrote into `outbox` (in their own
//! transaction) to the configured [`sinks`], at least once, in order per user.
//!
//! - **Never blocks a user request**: requests only insert rows; this task delivers them.
//! - **Nothing lost**: an event leaves the queue only when every sink took it; a crash between
//!   commit and delivery just means it is delivered after the restart (consumers deduplicate by
//!   event id, which is also sent as `Idempotency-Key`).
//! - **In order per user**: only the oldest undelivered event of a user is eligible, so a later
//!   event of the same user waits while an earlier one is retried.
//! - **Retries** use exponential backoff with full jitter and a cap; after `max-attempts` the
//!   event becomes a dead letter (`GET /admin/outbox/dead-letters`), stops holding back the
//!   user's later events, and can be replayed (`POST /admin/outbox/dead-letters/{id}/replay`).
//! - **Several replicas** can run relays on one database: a pass claims its events with a
//!   lease, so each is delivered by one relay at a time.

pub mod sinks;

use self::sinks::{Sink, SinkConfig};
use crate::{
    outbound::InternalClient,
    store::{DeliveryFailure, DeliveryOutcome, DueEvent, Store, now, now_micros},
};
use futures_util::StreamExt;
use policy_host::egress::retry::full_jitter_delay;
use serde::Deserialize;
use std::{
    collections::HashSet,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::Notify;

/// How often delivered events past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// `[events]`: the relay and its sinks.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EventsConfig {
    /// Run the relay in this process (`relay`, default on).
    pub relay: bool,
    /// Where events go (`[[events.sinks]]`); default: one JSON-lines file, `data/events.jsonl`.
    pub sinks: Vec<SinkConfig>,
    /// How often the relay looks for due events when nothing woke it (`poll-interval-ms`).
    pub poll_interval_ms: u64,
    /// Events read per pass (`batch-size`).
    pub batch_size: u32,
    /// Events delivered concurrently (different users; `parallelism`).
    pub parallelism: usize,
    /// Failed attempts after which an event becomes a dead letter (`max-attempts`).
    pub max_attempts: u32,
    /// First retry delay (`retry-base-ms`); the delay doubles per attempt, fully jittered.
    pub retry_base_ms: u64,
    /// Longest retry delay (`retry-cap-ms`).
    pub retry_cap_ms: u64,
    /// Time for one delivery to one sink, the client's own retries included
    /// (`delivery-timeout-ms`).
    pub delivery_timeout_ms: u64,
    /// How long delivered events stay in the outbox table before they are deleted
    /// (`delivered-retention-s`, default 7 days); dead letters are never deleted.
    pub delivered_retention_s: u64,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            relay: true,
            sinks: vec![SinkConfig::File {
                name: None,
                path: PathBuf::from("data/events.jsonl"),
            }],
            poll_interval_ms: 1000,
            batch_size: 100,
            parallelism: 8,
            max_attempts: 12,
            retry_base_ms: 1000,
            retry_cap_ms: 300_000,
            delivery_timeout_ms: 5000,
            delivered_retention_s: 7 * 24 * 3600,
        }
    }
}

/// The relay task's state.
pub struct Relay {
    store: Store,
    sinks: Vec<Sink>,
    config: EventsConfig,
    wake: Arc<Notify>,
}

impl Relay {
    /// A relay over `store` delivering through `client`.
    pub fn new(store: Store, config: EventsConfig, client: Arc<InternalClient>) -> Self {
        let sinks = config
            .sinks
            .iter()
            .cloned()
            .map(|sink| Sink::new(sink, client.clone()))
            .collect();
        Self {
            store,
            sinks,
            config,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Wakes the relay now (after a commit) instead of at its next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until the process ends.
    pub async fn run(self: Arc<Self>) {
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        let mut last_prune: Option<Instant> = None;
        loop {
            if last_prune.is_none_or(|pruned| pruned.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                self.prune().await;
            }
            let delivered = match self.pass().await {
                Ok(count) => count,
                Err(error) => {
                    tracing::error!(%error, "outbox relay cannot read the outbox");
                    0
                }
            };
            if delivered == 0 {
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                }
            }
        }
    }

    async fn prune(&self) {
        let before = now() - self.config.delivered_retention_s as i64;
        match self.store.prune_delivered(before).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "deleted delivered events past their retention"),
            Err(error) => tracing::warn!(%error, "cannot prune delivered events"),
        }
    }

    /// Delivers the events due now; returns how many were attempted. The pass claims its
    /// events and records their outcomes with one statement and one transaction, so the
    /// database sees two commits per pass, not two per event.
    pub async fn pass(&self) -> sqlx::Result<usize> {
        let now = now_micros();
        let due = self
            .store
            .due_events(now, i64::from(self.config.batch_size.max(1)))
            .await?;
        if due.is_empty() {
            return Ok(0);
        }
        let parallelism = self.config.parallelism.max(1);
        let timeout = Duration::from_millis(self.config.delivery_timeout_ms);
        // Long enough for every delivery of the pass to time out; after it, another replica
        // may take the events over.
        let rounds = due.len().div_ceil(parallelism) as u32;
        let lease = timeout * (self.sinks.len() as u32).max(1) * rounds + timeout;
        let ids: Vec<String> = due.iter().map(|due| due.event.id.clone()).collect();
        let claimed: HashSet<String> = self
            .store
            .claim_events(&ids, now, now + lease.as_micros() as i64)
            .await?
            .into_iter()
            .collect();
        let outcomes: Vec<DeliveryOutcome> = futures_util::stream::iter(
            due.into_iter()
                .filter(|due| claimed.contains(&due.event.id)),
        )
        .map(|due| self.deliver(due, timeout))
        .buffer_unordered(parallelism)
        .collect()
        .await;
        self.store.record_deliveries(&outcomes).await?;
        Ok(outcomes.len())
    }

    /// Offers one event to every sink that has not taken it yet.
    async fn deliver(&self, due: DueEvent, timeout: Duration) -> DeliveryOutcome {
        let event = &due.event;
        let mut done = due.sinks_done;
        let mut errors = Vec::new();
        let mut attempted = false;
        for sink in &self.sinks {
            if done.iter().any(|name| name == sink.name()) {
                continue;
            }
            match sink.deliver(event, timeout).await {
                Ok(()) => done.push(sink.name().to_owned()),
                Err(error) => {
                    attempted |= error.attempted;
                    errors.push(format!("{}: {}", sink.name(), error.message));
                }
            }
        }
        if errors.is_empty() {
            metrics::counter!("outbox_delivered_total", "type" => event.event_type.clone())
                .increment(1);
            return DeliveryOutcome::Delivered {
                id: event.id.clone(),
                sinks_done: done,
            };
        }
        // Only a sink that was actually tried uses up an attempt (not an open breaker).
        let attempts = due.attempts + i64::from(attempted);
        let dead = attempts >= i64::from(self.config.max_attempts.max(1));
        let error = errors.join("; ");
        let delay = full_jitter_delay(
            Duration::from_millis(self.config.retry_base_ms),
            Duration::from_millis(self.config.retry_cap_ms),
            attempts.saturating_sub(1).clamp(0, 30) as u32,
        );
        if dead {
            tracing::error!(event = %event.id, r#type = %event.event_type, attempts, %error, "event moved to the dead letters");
            metrics::counter!("outbox_dead_lettered_total", "type" => event.event_type.clone())
                .increment(1);
        } else {
            tracing::warn!(event = %event.id, r#type = %event.event_type, attempts, retry_in_ms = delay.as_millis() as u64, %error, "event delivery failed; will retry");
            metrics::counter!("outbox_delivery_failures_total", "type" => event.event_type.clone())
                .increment(1);
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
}
