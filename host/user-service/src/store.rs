//! Storage: SQLite by default, PostgreSQL when the URL says so, through sqlx's `Any` driver and
//! one portable schema (TEXT and BIGINT only; times are Unix seconds).
//!
//! Every state change that produces an event writes the event into `outbox` in the same
//! transaction, so a crash can't lose one (the relay that delivers them is its own piece).

mod accounts;
mod sessions;

pub use accounts::{AccountDetails, NewVerification, PendingVerification, VerifyOutcome};
pub use sessions::{Revoke, StoredSession};

use serde_json::Value;
use sqlx::{AnyPool, Row, any::AnyPoolOptions};
use std::{
    collections::BTreeMap,
    time::{SystemTime, UNIX_EPOCH},
};

/// The schema, applied at start (idempotent).
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS users (
        id TEXT PRIMARY KEY,
        email TEXT NOT NULL UNIQUE,
        display_name TEXT,
        password_hash TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        failed_logins BIGINT NOT NULL DEFAULT 0,
        reset_required BIGINT NOT NULL DEFAULT 0
    )",
    "CREATE TABLE IF NOT EXISTS reset_tokens (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT
    )",
    "CREATE TABLE IF NOT EXISTS outbox (
        id TEXT PRIMARY KEY,
        event_type TEXT NOT NULL,
        aggregate_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_at BIGINT NOT NULL, -- microseconds, see monotonic_micros
        delivered_at BIGINT
    )",
    "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered_at, created_at)",
];

/// Delivery-state columns of `outbox`, added to databases created before the relay existed.
/// Times are microseconds since the epoch.
const OUTBOX_DELIVERY_COLUMNS: &[&str] = &[
    "ALTER TABLE outbox ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE outbox ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE outbox ADD COLUMN claimed_until BIGINT",
    "ALTER TABLE outbox ADD COLUMN last_error TEXT",
    "ALTER TABLE outbox ADD COLUMN dead_at BIGINT",
    "ALTER TABLE outbox ADD COLUMN sinks_done TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX IF NOT EXISTS outbox_by_aggregate ON outbox (aggregate_id, created_at)",
];

/// Per-client login failures, shared by every replica; a row whose last failure is older
/// than the window is reset by the next failure and deleted by [`Store::prune_client_failures`].
const CLIENT_FAILURES_SCHEMA: &str = "CREATE TABLE IF NOT EXISTS client_login_failures (
        client TEXT PRIMARY KEY,
        failures BIGINT NOT NULL,
        last_failure_at BIGINT NOT NULL
    )";

/// The address as typed, kept for display next to the canonical `email` (see
/// [`crate::email`]); added to databases created before it existed, then filled by
/// [`Store::canonicalize_emails`].
const EMAIL_DISPLAY_COLUMN: &str = "ALTER TABLE users ADD COLUMN email_display TEXT";

/// A stored user.
#[derive(Debug, Clone)]
pub struct User {
    /// The user's id.
    pub id: String,
    /// The canonical address (unique).
    pub email: String,
    /// The address as typed at registration.
    pub email_display: String,
    /// The name shown, if given.
    pub display_name: Option<String>,
    /// The password's Argon2id PHC string.
    pub password_hash: String,
    /// Failed logins since the last success.
    pub failed_logins: i64,
    /// The password must be reset before the next login.
    pub reset_required: bool,
}

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

/// The database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

/// Unix seconds now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// Microseconds since the epoch (wall clock): delivery schedules and leases.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as i64)
}

/// Microseconds since the epoch, strictly increasing within this process: the outbox's order
/// (events of one request, and of one user, keep the order they were written in).
pub fn monotonic_micros() -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as i64);
    let mut last = LAST.load(Ordering::SeqCst);
    loop {
        let next = now.max(last + 1);
        match LAST.compare_exchange_weak(last, next, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => return next,
            Err(actual) => last = actual,
        }
    }
}

/// 128 random bits as hex: ids and event ids.
pub fn random_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

impl Store {
    /// Connects (creating the SQLite file and its directory when needed) and applies the schema.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let url = if let Some(path) = url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(parent) = std::path::Path::new(file)
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent)?;
            }
            if path.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            }
        } else {
            url.to_owned()
        };
        let is_sqlite = url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            // SQLite serialises writers anyway; one connection avoids "database is locked".
            .max_connections(if is_sqlite { 1 } else { 16 })
            .connect(&url)
            .await
            .map_err(|error| anyhow::anyhow!("cannot open database: {error}"))?;
        if is_sqlite {
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
            sqlx::query("PRAGMA synchronous = FULL")
                .execute(&pool)
                .await?;
        }
        for statement in SCHEMA {
            sqlx::query(statement).execute(&pool).await?;
        }
        sqlx::query(CLIENT_FAILURES_SCHEMA).execute(&pool).await?;
        for statement in sessions::SCHEMA.iter().chain(accounts::SCHEMA) {
            sqlx::query(statement).execute(&pool).await?;
        }
        let has_verified =
            || sqlx::query("SELECT email_verified_at FROM users LIMIT 1").fetch_optional(&pool);
        if has_verified().await.is_err()
            && let Err(error) = sqlx::query(accounts::EMAIL_VERIFIED_COLUMN)
                .execute(&pool)
                .await
            // Another replica starting at the same moment may have added it first.
            && has_verified().await.is_err()
        {
            return Err(anyhow::anyhow!(
                "cannot add users.email_verified_at: {error}"
            ));
        }
        let has_display =
            || sqlx::query("SELECT email_display FROM users LIMIT 1").fetch_optional(&pool);
        if has_display().await.is_err()
            && let Err(error) = sqlx::query(EMAIL_DISPLAY_COLUMN).execute(&pool).await
            // Another replica starting at the same moment may have added it first.
            && has_display().await.is_err()
        {
            return Err(anyhow::anyhow!("cannot add users.email_display: {error}"));
        }
        let store = Self { pool: pool.clone() };
        store.canonicalize_emails().await?;
        if sqlx::query("SELECT sinks_done FROM outbox LIMIT 1")
            .fetch_optional(&pool)
            .await
            .is_err()
        {
            for statement in OUTBOX_DELIVERY_COLUMNS {
                sqlx::query(statement).execute(&pool).await?;
            }
        }
        Ok(Self { pool })
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Gives every row stored before canonical addresses its canonical `email` and its
    /// `email_display` (the address as it was stored). Rows that cannot be migrated are logged
    /// and left as they are, still marked unmigrated: an address the canonical rules refuse, or
    /// one whose canonical form another account already has (the duplicates these rules now
    /// prevent; an operator merges them). Runs at every start; a no-op once done.
    pub async fn canonicalize_emails(&self) -> anyhow::Result<()> {
        // Oldest first: of two rows with one canonical form, the older account keeps it.
        let rows = sqlx::query(
            "SELECT id, email FROM users WHERE email_display IS NULL ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let id: String = row.try_get(0)?;
            let stored: String = row.try_get(1)?;
            let canonical = match crate::email::canonicalize(&stored) {
                Ok(email) => email.canonical,
                Err(error) => {
                    tracing::warn!(user = %id, %error, "stored address cannot be canonicalised; left as it is");
                    continue;
                }
            };
            let updated = sqlx::query(
                "UPDATE users SET email = $1, email_display = $2 WHERE id = $3 AND email_display IS NULL
                 AND NOT EXISTS (SELECT 1 FROM users other WHERE other.email = $1 AND other.id <> $3)",
            )
            .bind(&canonical)
            .bind(&stored)
            .bind(&id)
            .execute(&self.pool)
            .await;
            match updated {
                Ok(updated) if updated.rows_affected() == 1 => {}
                // Lost a race with another replica's migration, or a duplicate: the same outcome.
                Ok(_) | Err(sqlx::Error::Database(_)) => {
                    tracing::warn!(user = %id, "another account has this address's canonical form; left as it is");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// The user with this canonical address.
    pub async fn user_by_email(&self, email: &str) -> sqlx::Result<Option<User>> {
        let row = sqlx::query("SELECT id, email, display_name, password_hash, failed_logins, reset_required, email_display FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| user_from_row(&row)).transpose()
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: &str) -> sqlx::Result<Option<User>> {
        let row = sqlx::query("SELECT id, email, display_name, password_hash, failed_logins, reset_required, email_display FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| user_from_row(&row)).transpose()
    }

    /// Creates a user and its `UserRegisteredEventV1` atomically. `Ok(false)` when the email is taken.
    pub async fn create_user(&self, user: &User, event: &OutboxEvent) -> sqlx::Result<bool> {
        let mut transaction = self.pool.begin().await?;
        if !insert_user(&mut transaction, user).await? {
            transaction.rollback().await?;
            return Ok(false);
        }
        insert_event(&mut transaction, event).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Counts a failed login; returns the new count (one statement: concurrent calls each see
    /// their own count).
    pub async fn record_failed_login(&self, user_id: &str) -> sqlx::Result<i64> {
        let row = sqlx::query(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        row.try_get::<i64, _>(0)
    }

    /// Counts a login attempt on the account with this canonical address before its password
    /// is checked, and returns the user with `failed_logins` including this attempt: the
    /// increment and the read are one statement, so concurrent attempts each get their own
    /// count and every decision follows from it. `None` when there is no such account.
    pub async fn count_login_attempt(&self, email: &str) -> sqlx::Result<Option<User>> {
        let row = sqlx::query(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE email = $1
             RETURNING id, email, display_name, password_hash, failed_logins, reset_required, email_display",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| user_from_row(&row)).transpose()
    }

    /// Takes back an attempt counted by [`Store::count_login_attempt`] whose password was never
    /// checked (refused for a missing CAPTCHA, or locked).
    pub async fn uncount_login_attempt(&self, user_id: &str) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE users SET failed_logins = failed_logins - 1 WHERE id = $1 AND failed_logins > 0",
        )
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts a login attempt from `client` (fixed key, e.g. an address) and returns the count
    /// including it; a count whose last attempt is older than `window_start` (Unix seconds)
    /// starts again at one. One statement, shared by every replica on this database.
    pub async fn count_client_attempt(
        &self,
        client: &str,
        now: i64,
        window_start: i64,
    ) -> sqlx::Result<i64> {
        let row = sqlx::query(
            "INSERT INTO client_login_failures (client, failures, last_failure_at) VALUES ($1, 1, $2)
             ON CONFLICT (client) DO UPDATE SET
               failures = CASE WHEN client_login_failures.last_failure_at < $3 THEN 1
                               ELSE client_login_failures.failures + 1 END,
               last_failure_at = $2
             RETURNING failures",
        )
        .bind(client)
        .bind(now)
        .bind(window_start)
        .fetch_one(&self.pool)
        .await?;
        row.try_get::<i64, _>(0)
    }

    /// Takes back an attempt counted by [`Store::count_client_attempt`].
    pub async fn uncount_client_attempt(&self, client: &str) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE client_login_failures SET failures = failures - 1 WHERE client = $1 AND failures > 0",
        )
        .bind(client)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets a client's failures (after a successful login).
    pub async fn clear_client_failures(&self, client: &str) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM client_login_failures WHERE client = $1")
            .bind(client)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes client counts whose last attempt is older than `before`; returns how many.
    pub async fn prune_client_failures(&self, before: i64) -> sqlx::Result<u64> {
        let pruned = sqlx::query("DELETE FROM client_login_failures WHERE last_failure_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(pruned.rows_affected())
    }

    /// Clears failures after a successful login and records whether a reset is now required.
    pub async fn record_successful_login(
        &self,
        user_id: &str,
        reset_required: bool,
    ) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET failed_logins = 0, reset_required = $1 WHERE id = $2")
            .bind(i64::from(reset_required))
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Sets a new password hash (clearing failures and the reset flag) with its event, and
    /// consumes `reset_token_hash` when given — all in one transaction.
    pub async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        reset_token_hash: Option<&str>,
        event: &OutboxEvent,
    ) -> sqlx::Result<bool> {
        self.set_password_revoking(
            user_id,
            password_hash,
            reset_token_hash,
            Revoke::Nothing,
            event,
        )
        .await
    }

    /// [`Store::set_password`], ending the sessions `revoke` names in the same transaction.
    pub async fn set_password_revoking(
        &self,
        user_id: &str,
        password_hash: &str,
        reset_token_hash: Option<&str>,
        revoke: Revoke<'_>,
        event: &OutboxEvent,
    ) -> sqlx::Result<bool> {
        let mut transaction = self.pool.begin().await?;
        if let Some(token_hash) = reset_token_hash {
            let consumed = sqlx::query("UPDATE reset_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1")
                .bind(now())
                .bind(token_hash)
                .execute(&mut *transaction)
                .await?;
            if consumed.rows_affected() != 1 {
                transaction.rollback().await?;
                return Ok(false);
            }
        }
        sqlx::query("UPDATE users SET password_hash = $1, failed_logins = 0, reset_required = 0 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        revoke.apply(&mut transaction, user_id).await?;
        insert_event(&mut transaction, event).await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// Stores a reset token (hashed) and its `PasswordResetRequestedEventV1` atomically.
    pub async fn create_reset_token(
        &self,
        token_hash: &str,
        user_id: &str,
        expires_at: i64,
        event: &OutboxEvent,
    ) -> sqlx::Result<()> {
        let mut transaction = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO reset_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(expires_at)
        .execute(&mut *transaction)
        .await?;
        insert_event(&mut transaction, event).await?;
        transaction.commit().await
    }

    /// The user a still-valid, unused reset token belongs to.
    pub async fn reset_token_user(&self, token_hash: &str) -> sqlx::Result<Option<String>> {
        let row = sqlx::query("SELECT user_id FROM reset_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2")
            .bind(token_hash)
            .bind(now())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| row.try_get::<String, _>(0)).transpose()
    }

    /// Events not yet delivered (dead letters included), oldest first.
    pub async fn pending_events(&self) -> sqlx::Result<Vec<OutboxEvent>> {
        let rows = sqlx::query("SELECT id, event_type, aggregate_id, payload FROM outbox WHERE delivered_at IS NULL ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event_from_row).collect()
    }

    /// Events the relay may deliver now: undelivered, not dead, due, not claimed by a live
    /// lease, and the oldest undelivered event of their user (so one user's events go out in
    /// the order they were written). Oldest first.
    pub async fn due_events(&self, now_micros: i64, limit: i64) -> sqlx::Result<Vec<DueEvent>> {
        let rows = sqlx::query(
            "SELECT o.id, o.event_type, o.aggregate_id, o.payload, o.attempts, o.sinks_done FROM outbox o
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
        rows.iter()
            .map(|row| {
                let sinks_done: String = row.try_get(5)?;
                Ok(DueEvent {
                    event: event_from_row(row)?,
                    attempts: row.try_get(4)?,
                    sinks_done: sinks_done
                        .split(',')
                        .filter(|sink| !sink.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .collect()
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
        let mut query = sqlx::query(&sql).bind(until_micros).bind(now_micros);
        for id in ids {
            query = query.bind(id);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(|row| row.try_get::<String, _>(0)).collect()
    }

    /// Records a relay pass's outcomes in one transaction (one commit, not one per event):
    /// deliveries, failed attempts with their next try, dead letters.
    pub async fn record_deliveries(&self, outcomes: &[DeliveryOutcome]) -> sqlx::Result<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let mut transaction = self.pool.begin().await?;
        // Delivered events, grouped by the sinks that took them: one UPDATE per group.
        let mut delivered: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for outcome in outcomes {
            if let DeliveryOutcome::Delivered { id, sinks_done } = outcome {
                delivered.entry(sinks_done.join(",")).or_default().push(id);
            }
        }
        for (sinks_done, ids) in delivered {
            let sql = format!(
                "UPDATE outbox SET delivered_at = $1, claimed_until = NULL, last_error = NULL,
                 sinks_done = $2 WHERE id IN ({})",
                placeholders(3, ids.len())
            );
            let mut query = sqlx::query(&sql).bind(now()).bind(sinks_done);
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
                "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3, sinks_done = $4,
                 dead_at = $5, claimed_until = NULL WHERE id = $6",
            )
            .bind(failure.attempts)
            .bind(failure.next_attempt_at)
            .bind(&failure.error)
            .bind(failure.sinks_done.join(","))
            .bind(failure.dead.then(now))
            .bind(&failure.id)
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await
    }

    /// Dead letters, oldest first.
    pub async fn dead_letters(&self, limit: i64) -> sqlx::Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT id, event_type, aggregate_id, payload, attempts, last_error, dead_at, sinks_done FROM outbox
             WHERE dead_at IS NOT NULL AND delivered_at IS NULL ORDER BY created_at, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeadLetter {
                    event: event_from_row(row)?,
                    attempts: row.try_get(4)?,
                    last_error: row.try_get(5)?,
                    dead_at: row.try_get(6)?,
                    sinks_done: row.try_get(7)?,
                })
            })
            .collect()
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

    /// Deletes events delivered before `before` (Unix seconds); returns how many.
    pub async fn prune_delivered(&self, before: i64) -> sqlx::Result<u64> {
        let pruned =
            sqlx::query("DELETE FROM outbox WHERE delivered_at IS NOT NULL AND delivered_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?;
        Ok(pruned.rows_affected())
    }

    /// Undelivered events: (pending, dead). Cheaper than [`Store::outbox_counts`]: it only
    /// reads undelivered rows (the `delivered_at` index).
    pub async fn undelivered_counts(&self) -> sqlx::Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT
               COALESCE(SUM(CASE WHEN dead_at IS NULL THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0)
             FROM outbox WHERE delivered_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?))
    }

    /// Counts by delivery state: (pending, dead, delivered).
    pub async fn outbox_counts(&self) -> sqlx::Result<(i64, i64, i64)> {
        let row = sqlx::query(
            "SELECT
               COALESCE(SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NULL THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN delivered_at IS NULL AND dead_at IS NOT NULL THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN delivered_at IS NOT NULL THEN 1 ELSE 0 END), 0)
             FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
    }
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
    /// Unix seconds.
    pub dead_at: Option<i64>,
    /// Sinks that did take it, comma-separated.
    pub sinks_done: String,
}

/// `$first, $first+1, ...`: `count` numbered placeholders.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn event_from_row(row: &sqlx::any::AnyRow) -> sqlx::Result<OutboxEvent> {
    let payload: String = row.try_get(3)?;
    Ok(OutboxEvent {
        id: row.try_get(0)?,
        event_type: row.try_get(1)?,
        aggregate_id: row.try_get(2)?,
        payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
    })
}

async fn insert_event(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
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

/// Inserts `user` unless its email is taken (`Ok(false)`).
async fn insert_user(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: &User,
) -> sqlx::Result<bool> {
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, display_name, password_hash, created_at, failed_logins, reset_required, email_display)
         VALUES ($1, $2, $3, $4, $5, 0, 0, $6) ON CONFLICT (email) DO NOTHING",
    )
    .bind(&user.id)
    .bind(&user.email)
    .bind(&user.display_name)
    .bind(&user.password_hash)
    .bind(now())
    .bind(&user.email_display)
    .execute(&mut **transaction)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

fn user_from_row(row: &sqlx::any::AnyRow) -> sqlx::Result<User> {
    let email: String = row.try_get(1)?;
    Ok(User {
        id: row.try_get(0)?,
        // A row not yet migrated shows its stored address.
        email_display: row
            .try_get::<Option<String>, _>(6)?
            .unwrap_or_else(|| email.clone()),
        email,
        display_name: row.try_get(2)?,
        password_hash: row.try_get(3)?,
        failed_logins: row.try_get(4)?,
        reset_required: row.try_get::<i64, _>(5)? != 0,
    })
}
