//! The `reset_tokens` table: single-use password-reset tokens (only their SHA-256 is stored).

use super::{OutboxEvent, Store, now, outbox::insert_event};
use sqlx::{Any, Transaction};

/// Marks the valid, unused token with this hash used, in `transaction`; `false` when there is
/// none (unknown, expired, or used by a concurrent request).
pub(super) async fn consume(
    transaction: &mut Transaction<'_, Any>,
    token_hash: &str,
) -> sqlx::Result<bool> {
    let consumed = sqlx::query(
        "UPDATE reset_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
    )
    .bind(now())
    .bind(token_hash)
    .execute(&mut **transaction)
    .await?;
    Ok(consumed.rows_affected() == 1)
}

impl Store {
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
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT user_id FROM reset_tokens WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(user_id,)| user_id))
    }
}
