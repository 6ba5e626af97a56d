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
//! - **No head-of-line blocking**: every claimed event is delivered by its own task (at most
//!   `parallelism` sending at once), and a pass never waits for a delivery. A slow or hanging
//!   consumer holds only the event it is slow on (and so that user's later events), for at most
//!   the delivery timeout; the other users' events go past it. Outcomes are recorded as they
//!   come in, whatever has finished in one transaction.
//! - **A short-circuit is not an attempt**: while a sink's breaker is open its deliveries are
//!   deferred (counted and logged apart from failures, see [`delivery`]).

pub mod cloudevents;
mod delivery;
pub mod nats;
pub mod sinks;

use self::{delivery::Deliverer, sinks::SinkConfig};
use crate::{
    outbound::InternalClient,
    store::{DeliveryFailure, DeliveryOutcome, DueEvent, Store, now_micros},
};
use futures_util::FutureExt;
use serde::Deserialize;
use std::{
    collections::HashSet,
    panic::AssertUnwindSafe,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc},
    task::JoinSet,
};

/// How often delivered events past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_hours(1);
/// Added to every lease: time to record an outcome after its delivery ended.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

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
    /// Events read per pass (`batch-size`), and the most events one relay holds claimed and
    /// not yet recorded.
    pub batch_size: u32,
    /// Events sent concurrently (different users; `parallelism`).
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
    /// The CloudEvents `source` of every event (`source`, a URI reference naming this service).
    pub source: String,
}

impl EventsConfig {
    /// The longest time between an event's first send and its last automatic re-send: every
    /// retry delay at its cap, every attempt running into its timeout, plus a claim's lease (a
    /// relay that died mid-delivery leaves the event claimed that long). A broker's duplicate
    /// window must cover it for re-sends to be recognised.
    pub fn retry_horizon(&self) -> Duration {
        let attempts = self.max_attempts.max(1);
        let delays: u64 = (0..attempts.saturating_sub(1))
            .map(|attempt| {
                self.retry_base_ms
                    .saturating_mul(1u64 << attempt.min(30))
                    .min(self.retry_cap_ms)
            })
            .sum();
        let sinks = self.sinks.len().max(1) as u64;
        let attempt = self.delivery_timeout_ms.saturating_mul(sinks);
        let rounds = u64::from(self.batch_size.max(1)).div_ceil(self.parallelism.max(1) as u64);
        let lease = attempt.saturating_mul(rounds + 1) + LEASE_MARGIN.as_millis() as u64;
        Duration::from_millis(
            delays
                .saturating_add(attempt.saturating_mul(u64::from(attempts)))
                .saturating_add(lease),
        )
    }
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
            source: "/user-service".to_owned(),
        }
    }
}

/// The relay task's state.
pub struct Relay {
    store: Store,
    deliverer: Arc<Deliverer>,
    config: EventsConfig,
    wake: Arc<Notify>,
    /// Events claimed and not yet recorded, at most `batch-size`: a permit travels with each
    /// delivery and is returned when its outcome is recorded.
    claims: Arc<Semaphore>,
    /// Deliveries sending at once, at most `parallelism`.
    senders: Arc<Semaphore>,
}

/// A delivery's outcome on its way to the database, with the claim it holds.
struct Finished {
    outcome: DeliveryOutcome,
    _claim: OwnedSemaphorePermit,
}

/// What the run loop tracks between passes.
struct InFlight {
    /// Delivery tasks; dropped (and so aborted) with the loop.
    tasks: JoinSet<()>,
    /// Ids of events being delivered: never claimed again by this relay before their outcome is
    /// recorded, even if the database were slow enough for the lease to run out.
    ids: HashSet<String>,
    finished_tx: mpsc::UnboundedSender<Finished>,
}

impl Relay {
    /// A relay over `store` delivering through `client`.
    pub fn new(store: Store, config: EventsConfig, client: Arc<InternalClient>) -> Self {
        Self {
            store,
            deliverer: Arc::new(Deliverer::new(config.clone(), client)),
            claims: Arc::new(Semaphore::new(config.batch_size.max(1) as usize)),
            senders: Arc::new(Semaphore::new(config.parallelism.max(1))),
            config,
            wake: Arc::new(Notify::new()),
        }
    }

    /// The sinks' start-up checks (see [`sinks::Sink::prepare`]): fails when a NATS stream is
    /// missing and may not be created; a broker that does not answer within `wait` is left to
    /// the relay's retries.
    pub async fn prepare(&self, wait: Duration) -> anyhow::Result<()> {
        self.deliverer.prepare(wait).await
    }

    /// Wakes the relay now (after a commit) instead of at its next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until the process ends (or the task is aborted, which aborts its deliveries: their
    /// events are delivered again after their lease).
    pub async fn run(self: Arc<Self>) {
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(10));
        let mut last_prune: Option<Instant> = None;
        let (finished_tx, mut finished_rx) = mpsc::unbounded_channel();
        let mut flight = InFlight {
            tasks: JoinSet::new(),
            ids: HashSet::new(),
            finished_tx,
        };
        let mut finished = Vec::new();
        loop {
            if last_prune.is_none_or(|pruned| pruned.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(Instant::now());
                self.prune().await;
            }
            // Panics are turned into outcomes inside the tasks; this only reaps them.
            while flight.tasks.try_join_next().is_some() {}
            while let Ok(done) = finished_rx.try_recv() {
                finished.push(done);
            }
            let recorded = self.record(&mut finished, &mut flight.ids).await;
            let started = match self.start_deliveries(&mut flight).await {
                Ok(started) => started,
                Err(error) => {
                    tracing::error!(%error, "outbox relay cannot read the outbox");
                    0
                }
            };
            if recorded == 0 && started == 0 {
                let batch = self.config.batch_size.max(1) as usize;
                tokio::select! {
                    () = self.wake.notified() => {}
                    () = tokio::time::sleep(poll) => {}
                    _ = finished_rx.recv_many(&mut finished, batch) => {}
                }
            }
        }
    }

    async fn prune(&self) {
        // Delivery times are microseconds, like every outbox time.
        let before = now_micros() - self.config.delivered_retention_s as i64 * 1_000_000;
        match self.store.prune_delivered(before).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "deleted delivered events past their retention"),
            Err(error) => tracing::warn!(%error, "cannot prune delivered events"),
        }
    }

    /// How long a claim holds: long enough for every event this relay may hold claimed to be
    /// delivered before this one (`batch-size` events, `parallelism` at a time, each running
    /// into its timeout at every sink), then this one, then its outcome recorded. After it,
    /// another replica may take the event over.
    fn lease(&self) -> Duration {
        let rounds =
            (self.config.batch_size.max(1) as usize).div_ceil(self.config.parallelism.max(1));
        self.deliverer.longest_delivery() * (rounds as u32 + 1) + LEASE_MARGIN
    }

    /// One pass: claims as many due events as this relay has room for and starts a delivery
    /// task for each; returns how many it started. It does not wait for any delivery.
    async fn start_deliveries(&self, flight: &mut InFlight) -> sqlx::Result<usize> {
        let room = self.claims.available_permits();
        if room == 0 {
            return Ok(0);
        }
        let now = now_micros();
        let due: Vec<DueEvent> = self
            .store
            .due_events(now, room as i64)
            .await?
            .into_iter()
            .filter(|due| !flight.ids.contains(&due.event.id))
            .collect();
        if due.is_empty() {
            return Ok(0);
        }
        let ids: Vec<String> = due.iter().map(|due| due.event.id.clone()).collect();
        let until = now + self.lease().as_micros() as i64;
        let claimed: HashSet<String> = self
            .store
            .claim_events(&ids, now, until)
            .await?
            .into_iter()
            .collect();
        let mut started = 0;
        for due in due
            .into_iter()
            .filter(|due| claimed.contains(&due.event.id))
        {
            // Only this loop takes claims, and it saw `room` free: this cannot fail. An event
            // claimed but not started is delivered after its lease.
            let Ok(claim) = self.claims.clone().try_acquire_owned() else {
                break;
            };
            flight.ids.insert(due.event.id.clone());
            let deliverer = self.deliverer.clone();
            let senders = self.senders.clone();
            let finished = flight.finished_tx.clone();
            flight.tasks.spawn(async move {
                let outcome = deliver_one(&deliverer, &senders, due).await;
                // The receiver lives as long as the loop that spawned this task.
                let _ = finished.send(Finished {
                    outcome,
                    _claim: claim,
                });
            });
            started += 1;
        }
        Ok(started)
    }

    /// Records `finished` outcomes in one transaction and returns their claims; returns how
    /// many. When the database refuses, the outcomes are lost and their events delivered again
    /// after their lease (at least once).
    async fn record(&self, finished: &mut Vec<Finished>, in_flight: &mut HashSet<String>) -> usize {
        if finished.is_empty() {
            return 0;
        }
        let batch = std::mem::take(finished);
        let outcomes: Vec<DeliveryOutcome> = batch
            .iter()
            .map(|finished| finished.outcome.clone())
            .collect();
        if let Err(error) = self.store.record_deliveries(&outcomes).await {
            tracing::error!(%error, events = outcomes.len(), "cannot record outbox deliveries; they are retried after their lease");
        }
        for outcome in &outcomes {
            in_flight.remove(outcome_id(outcome));
        }
        batch.len()
    }
}

/// Waits for a sender slot, then delivers `due`; a panic becomes a failed attempt.
async fn deliver_one(deliverer: &Deliverer, senders: &Semaphore, due: DueEvent) -> DeliveryOutcome {
    let id = due.event.id.clone();
    let attempts = due.attempts + 1;
    let sinks_done = due.sinks_done.clone();
    // The semaphore is never closed.
    let _sending = senders.acquire().await.ok();
    metrics::gauge!("outbox_deliveries_in_flight").increment(1.0);
    let outcome = AssertUnwindSafe(deliverer.deliver(due))
        .catch_unwind()
        .await;
    metrics::gauge!("outbox_deliveries_in_flight").decrement(1.0);
    outcome.unwrap_or_else(|_| {
        tracing::error!(event = %id, "an outbox delivery panicked; the event will be retried");
        DeliveryOutcome::Failed(DeliveryFailure {
            id,
            attempts,
            next_attempt_at: now_micros() + 1_000_000,
            error: "the delivery panicked".to_owned(),
            sinks_done,
            dead: false,
        })
    })
}

fn outcome_id(outcome: &DeliveryOutcome) -> &str {
    match outcome {
        DeliveryOutcome::Delivered { id, .. } => id,
        DeliveryOutcome::Failed(failure) => &failure.id,
    }
}
