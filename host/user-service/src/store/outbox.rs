//! The `outbox` table: events written in the transaction of the change they report, then
//! delivered by the relay (leases, retries, dead letters). Every time here is microseconds
//! since the epoch (`created_at` from [`monotonic_micros`], the rest from the wall clock); the
//! sinks that took an event are a JSON array of names (`delivered_to`, see [`SinkList`]).

use super::{Store, monotonic_micros, now_micros, placeholders};
use serde_json::Value;
use sqlx::{Any, FromRow, Transaction};
use std::collections::BTreeMap;

/// An event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// The event's id (the CloudEvents `id`).
    pub id: String,
    /// Its type (e.g. `UserRegisteredEventV1`).
    pub event_type: String,
    /// The user it is about; events of one user are delivered in order.
    pub aggregate_id: String,
    /// The event data.
    pub payload: Value,
}

/// An event the relay may deliver now.
#[derive(Debug, Clone)]
pub struct DueEvent {
    /// The event.
    pub event: OutboxEvent,
    /// Failed attempts so far.
    pub attempts: i64,
    /// Sinks that already took it (not sent to again).
    pub sinks_done: Vec<String>,
}

/// What one delivery of one event came to.
#[derive(Debug, Clone)]
pub enum DeliveryOutcome {
    /// Every sink took it.
    Delivered {
        /// The event.
        id: String,
        /// The sinks that took it.
        sinks_done: Vec<String>,
    },
    /// At least one sink did not.
    Failed(DeliveryFailure),
}

/// A failed delivery attempt, as recorded.
#[derive(Debug, Clone)]
pub struct DeliveryFailure {
    /// The event's id.
    pub id: String,
    /// Failed attempts so far, this one included.
    pub attempts: i64,
    /// When to try again (microseconds since the epoch).
    pub next_attempt_at: i64,
    /// What the last failure was.
    pub error: String,
    /// Sinks that did take it.
    pub sinks_done: Vec<String>,
    /// Out of attempts: a dead letter now.
    pub dead: bool,
}

/// An event that ran out of attempts.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The event.
    pub event: OutboxEvent,
    /// Delivery attempts made.
    pub attempts: i64,
    /// What the last failure was.
    pub last_error: Option<String>,
    /// When it ran out (microseconds since the epoch).
    pub dead_at_micros: Option<i64>,
    /// Sinks that did take it.
    pub sinks_done: Vec<String>,
}

/// The `delivered_to` column: sink names as a JSON array. The one place that reads and writes
/// that format.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SinkList(Vec<String>);

impl TryFrom<String> for SinkList {
    type Error = serde_json::Error;

    fn try_from(column: String) -> Result<Self, Self::Error> {
        serde_json::from_str(&column).map(Self)
    }
}

impl SinkList {
    /// The column's text for `sinks`.
    fn encode(sinks: &[String]) -> String {
        // A list of strings always serialises.
        serde_json::to_string(sinks).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// The event columns every read selects first.
const EVENT_COLUMNS: &str = "id, event_type, aggregate_id, payload";

/// An event as stored (the payload as JSON text).
#[derive(FromRow)]
struct EventRow {
    id: String,
    event_type: String,
    aggregate_id: String,
    payload: String,
}

impl From<EventRow> for OutboxEvent {
    fn from(row: EventRow) -> Self {
        Self {
            id: row.id,
            event_type: row.event_type,
            aggregate_id: row.aggregate_id,
            // Written by `insert_event` from a `Value`: always JSON.
            payload: serde_json::from_str(&row.payload).unwrap_or(Value::Null),
        }
    }
}

/// A due event as stored.
#[derive(FromRow)]
struct DueRow {
    #[sqlx(flatten)]
    event: EventRow,
    attempts: i64,
    #[sqlx(try_from = "String")]
    delivered_to: SinkList,
}

/// A dead letter as stored.
#[derive(FromRow)]
struct DeadRow {
    #[sqlx(flatten)]
    event: EventRow,
    attempts: i64,
    last_error: Option<String>,
    dead_at: Option<i64>,
    #[sqlx(try_from = "String")]
    delivered_to: SinkList,
}

/// Writes `event` in `transaction`, ordered after every event this process wrote before.
pub(super) async fn insert_event(
    transaction: &mut Transaction<'_, Any>,
    event: &OutboxEvent,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO outbox (id, event_type, aggregate_id, payload, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&event.id)
        .bind(&event.event_type)
        .bind(&event.aggregate_id)
        .bind(event.payload.to_string())
        .bind(monotonic_micros())
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

impl Store {
    /// Events not yet delivered (dead letters included), oldest first.
    pub async fn pending_events(&self) -> sqlx::Result<Vec<OutboxEvent>> {
        let rows: Vec<EventRow> = sqlx::query_as(&format!(
            "SELECT {EVENT_COLUMNS} FROM outbox WHERE delivered_at IS NULL ORDER BY created_at, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(OutboxEvent::from).collect())
    }

    /// Events the relay may deliver now: undelivered, not dead, due, not claimed by a live
    /// lease, and the oldest undelivered event of their user (so one user's events go out in
    /// the order they were written). Oldest first.
    pub async fn due_events(&self, now_micros: i64, limit: i64) -> sqlx::Result<Vec<DueEvent>> {
        let rows: Vec<DueRow> = sqlx::query_as(
            "SELECT o.id, o.event_type, o.aggregate_id, o.payload, o.attempts, o.delivered_to FROM outbox o
             WHERE o.delivered_at IS NULL AND o.dead_at IS NULL AND o.next_attempt_at <= $1
               AND (o.claimed_until IS NULL OR o.claimed_until < $1)
               AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.aggregate_id = o.aggregate_id
                   AND e.delivered_at IS NULL AND e.dead_at IS NULL
                   AND (e.created_at < o.created_at OR (e.created_at = o.created_at AND e.id < o.id)))
             ORDER BY o.created_at, o.id LIMIT $2",
        )
        .bind(now_micros)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| DueEvent {
                event: row.event.into(),
                attempts: row.attempts,
                sinks_done: row.delivered_to.0,
            })
            .collect())
    }

    /// Takes a delivery lease until `until_micros` on those of `ids` that are still pending and
    /// not leased by another relay (another replica); returns the ids it got, in one statement.
    pub async fn claim_events(
        &self,
        ids: &[String],
        now_micros: i64,
        until_micros: i64,
    ) -> sqlx::Result<Vec<String>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "UPDATE outbox SET claimed_until = $1 WHERE id IN ({}) AND delivered_at IS NULL
             AND dead_at IS NULL AND (claimed_until IS NULL OR claimed_until < $2) RETURNING id",
            placeholders(3, ids.len())
        );
        let mut query = sqlx::query_as(&sql).bind(until_micros).bind(now_micros);
        for id in ids {
            query = query.bind(id);
        }
        let rows: Vec<(String,)> = query.fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// Records a relay pass's outcomes in one transaction (one commit, not one per event):
    /// deliveries, failed attempts with their next try, dead letters.
    pub async fn record_deliveries(&self, outcomes: &[DeliveryOutcome]) -> sqlx::Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let now = now_micros();
        let mut transaction = self.pool.begin().await?;
        // Delivered events, grouped by the sinks that took them: one UPDATE per group.
        let mut delivered: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for outcome in outcomes {
            if let DeliveryOutcome::Delivered { id, sinks_done } = outcome {
                delivered
                    .entry(SinkList::encode(sinks_done))
                    .or_default()
                    .push(id);
            }
        }
        for (delivered_to, ids) in delivered {
            let sql = format!(
                "UPDATE outbox SET delivered_at = $1, claimed_until = NULL, last_error = NULL,
                 delivered_to = $2 WHERE id IN ({})",
                placeholders(3, ids.len())
            );
            let mut query = sqlx::query(&sql).bind(now).bind(delivered_to);
            for id in ids {
                query = query.bind(id);
            }
            query.execute(&mut *transaction).await?;
        }
        for outcome in outcomes {
            let DeliveryOutcome::Failed(failure) = outcome else {
                continue;
            };
            sqlx::query(
                "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, delivered_to = $4,
                 dead_at = $5, claimed_until = NULL WHERE id = $6",
            )
            .bind(failure.attempts)
            .bind(failure.next_attempt_at)
            .bind(&failure.error)
            .bind(SinkList::encode(&failure.sinks_done))
            .bind(failure.dead.then_some(now))
            .bind(&failure.id)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await
    }

    /// Dead letters, oldest first.
    pub async fn dead_letters(&self, limit: i64) -> sqlx::Result<Vec<DeadLetter>> {
        let rows: Vec<DeadRow> = sqlx::query_as(
            "SELECT id, event_type, aggregate_id, payload, attempts, last_error, dead_at, delivered_to FROM outbox
             WHERE dead_at IS NOT NULL AND delivered_at IS NULL ORDER BY created_at, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| DeadLetter {
                event: row.event.into(),
                attempts: row.attempts,
                last_error: row.last_error,
                dead_at_micros: row.dead_at,
                sinks_done: row.delivered_to.0,
            })
            .collect())
    }

    /// Puts dead letters back in the queue with a fresh attempt count: the one called `id`, or
    /// all of them. Returns how many.
    pub async fn replay_dead_letters(&self, id: Option<&str>) -> sqlx::Result<u64> {
        let replay = "UPDATE outbox SET dead_at = NULL, attempts = 0, next_attempt_at = 0, claimed_until = NULL
             WHERE dead_at IS NOT NULL AND delivered_at IS NULL";
        let result = match id {
            Some(id) => {
                sqlx::query(&format!("{replay} AND id = $1"))
                    .bind(id)
                    .execute(&self.pool)
                    .await?
            }
            None => sqlx::query(replay).execute(&self.pool).await?,
        };
        Ok(result.rows_affected())
    }

    /// Deletes events delivered before `before_micros` (microseconds since the epoch); returns
    /// how many.
    pub async fn prune_delivered(&self, before_micros: i64) -> sqlx::Result<u64> {
        let pruned =
            sqlx::query("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1")
                .bind(before_micros)
                .execute(&self.pool)
                .await?;
        Ok(pruned.rows_affected())
    }

    /// Undelivered events: (pending, dead). Cheaper than [`Store::outbox_counts`]: it only
    /// reads undelivered rows (the `delivered_at` index).
    pub async fn undelivered_counts(&self) -> sqlx::Result<(i64, i64)> {
        sqlx::query_as(
            "SELECT
               COALESCE(SUM(CASE WHEN dead_at IS NULL THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0)
             FROM outbox WHERE delivered_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
    }

    /// Counts by delivery state: (pending, dead, delivered).
    pub async fn outbox_counts(&self) -> sqlx::Result<(i64, i64, i64)> {
        sqlx::query_as(
            "SELECT
               COALESCE(SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NULL THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NOT NULL THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END), 0)
             FROM outbox",
        )
        .fetch_one(&self.pool)
        .await
    }
}
