//! The `client_login_failures` table: per-client login failures, shared by every replica; a row
//! whose last failure is older than the window is reset by the next failure and deleted by
//! [`Store::prune_client_failures`]. Times are Unix seconds.

use super::Store;

impl Store {
    /// Counts a login attempt from `client` (fixed key, e.g. an address) and returns the count
    /// including it; a count whose last attempt is older than `window_start` (Unix seconds)
    /// starts again at one. One statement, shared by every replica on this database.
    pub async fn count_client_attempt(
        &self,
        client: &str,
        now: i64,
        window_start: i64,
    ) -> sqlx::Result<i64> {
        let (failures,): (i64,) = sqlx::query_as(
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
        Ok(failures)
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
}
