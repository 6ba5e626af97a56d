//! The `sessions` table: one row per session, keyed by a random id, found by the SHA-256 of its
//! bearer token (the token itself is never stored).

use super::{Store, now};
use sqlx::{Any, FromRow, Transaction};

/// A stored session (Unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct StoredSession {
    /// Random, public: names the session in lists, never authenticates.
    pub id: String,
    /// Its user.
    pub user_id: String,
    /// When it started (Unix seconds).
    pub created_at: i64,
    /// The absolute end: no use extends it.
    pub expires_at: i64,
    /// Last use, as recorded (at most `touch-interval-s` stale).
    pub last_seen_at: i64,
    /// How the user proved who they are: `password`.
    pub authenticated_with: String,
}

/// Which of a user's sessions a password change ends.
#[derive(Debug, Clone, Copy)]
pub enum Revoke<'a> {
    /// None (the store contract's plain [`Store::set_password`]).
    Nothing,
    /// Every session of the user.
    All,
    /// Every session of the user but this one (by id).
    AllBut(&'a str),
}

impl Revoke<'_> {
    /// Deletes the sessions this names, in `transaction`; returns how many.
    pub(super) async fn apply(
        self,
        transaction: &mut Transaction<'_, Any>,
        user_id: &str,
    ) -> sqlx::Result<u64> {
        let result = match self {
            Self::Nothing => return Ok(0),
            Self::All => {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(user_id)
                    .execute(&mut **transaction)
                    .await?
            }
            Self::AllBut(keep) => {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
                    .bind(user_id)
                    .bind(keep)
                    .execute(&mut **transaction)
                    .await?
            }
        };
        Ok(result.rows_affected())
    }
}

const COLUMNS: &str = "id, user_id, created_at, expires_at, last_seen_at, authenticated_with";

impl Store {
    /// Stores a new session under the SHA-256 (hex) of its token.
    pub async fn create_session(
        &self,
        session: &StoredSession,
        token_hash: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO sessions (id, token_hash, user_id, created_at, expires_at, last_seen_at, authenticated_with)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&session.id)
        .bind(token_hash)
        .bind(&session.user_id)
        .bind(session.created_at)
        .bind(session.expires_at)
        .bind(session.last_seen_at)
        .bind(&session.authenticated_with)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The session whose token has this hash, whatever its expiry (the caller decides).
    pub async fn session_by_token_hash(
        &self,
        token_hash: &str,
    ) -> sqlx::Result<Option<StoredSession>> {
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE token_hash = $1"
        ))
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await
    }

    /// Records a use of the session at `at` (only moves forward).
    pub async fn touch_session(&self, id: &str, at: i64) -> sqlx::Result<()> {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Ends one session of `user_id`; `false` when it was already gone.
    pub async fn delete_session(&self, user_id: &str, id: &str) -> sqlx::Result<bool> {
        let deleted = sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(deleted.rows_affected() == 1)
    }

    /// A user's sessions that are neither expired nor idle longer than `idle_timeout_s`,
    /// newest first.
    pub async fn active_sessions(
        &self,
        user_id: &str,
        idle_timeout_s: i64,
    ) -> sqlx::Result<Vec<StoredSession>> {
        let now = now();
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM sessions WHERE user_id = $1 AND expires_at > $2 AND last_seen_at > $3
             ORDER BY created_at DESC, id"
        ))
        .bind(user_id)
        .bind(now)
        .bind(now.saturating_sub(idle_timeout_s))
        .fetch_all(&self.pool)
        .await
    }

    /// Ends sessions of `user_id` (see [`Revoke`]); returns how many.
    pub async fn revoke_sessions(&self, user_id: &str, revoke: Revoke<'_>) -> sqlx::Result<u64> {
        let mut transaction = self.pool.begin().await?;
        let revoked = revoke.apply(&mut transaction, user_id).await?;
        transaction.commit().await?;
        Ok(revoked)
    }

    /// Deletes sessions past their absolute expiry or idle longer than `idle_timeout_s`;
    /// returns how many.
    pub async fn prune_sessions(&self, idle_timeout_s: i64) -> sqlx::Result<u64> {
        let now = now();
        let pruned =
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2")
                .bind(now)
                .bind(now.saturating_sub(idle_timeout_s))
                .execute(&self.pool)
                .await?;
        Ok(pruned.rows_affected())
    }
}
