//! The `email_verifications` table: a row is one single-use token (only its SHA-256 is stored)
//! for one address of one user: the registered address, or the new one of a pending change (the
//! account keeps its old address until this one is verified). Completing one sets
//! `users.email_verified_at`.

use super::{OutboxEvent, Store, User, now, outbox::insert_event, users::insert_user};
use sqlx::FromRow;

/// A verification to store.
#[derive(Debug, Clone)]
pub struct NewVerification {
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    /// The account it verifies.
    pub user_id: String,
    /// The canonical address to verify.
    pub email: String,
    /// That address as typed.
    pub email_display: String,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A valid, unused verification found by its token.
#[derive(Debug, Clone, FromRow)]
pub struct PendingVerification {
    /// The account.
    pub user_id: String,
    /// The canonical address now verified.
    pub email: String,
    /// The address as the user typed it.
    pub email_display: String,
}

/// How completing a verification ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyOutcome {
    /// The address is now verified.
    Verified,
    /// Unknown, expired or already used (by a concurrent request, say).
    InvalidToken,
    /// A pending change to an address another account took meanwhile.
    EmailTaken,
}

async fn insert_verification(
    transaction: &mut sqlx::Transaction<'_, sqlx::Any>,
    verification: &NewVerification,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO email_verifications (token_hash, user_id, email, email_display, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&verification.token_hash)
    .bind(&verification.user_id)
    .bind(&verification.email)
    .bind(&verification.email_display)
    .bind(now())
    .bind(verification.expires_at)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

impl Store {
    /// Creates a user with its verification and both events (`UserRegisteredEventV1`,
    /// `EmailVerificationRequestedEventV1`) atomically. `Ok(false)` when the email is taken.
    pub async fn register_user(
        &self,
        user: &User,
        verification: &NewVerification,
        events: &[&OutboxEvent],
    ) -> sqlx::Result<bool> {
        let mut transaction = self.pool.begin().await?;
        if !insert_user(&mut transaction, user).await? {
            transaction.rollback().await?;
            return Ok(false);
        }
        insert_verification(&mut transaction, verification).await?;
        for event in events {
            insert_event(&mut transaction, event).await?;
        }
        transaction.commit().await?;
        Ok(true)
    }

    /// Stores a verification and its `EmailVerificationRequestedEventV1` atomically.
    pub async fn create_verification(
        &self,
        verification: &NewVerification,
        event: &OutboxEvent,
    ) -> sqlx::Result<()> {
        let mut transaction = self.pool.begin().await?;
        insert_verification(&mut transaction, verification).await?;
        insert_event(&mut transaction, event).await?;
        transaction.commit().await
    }

    /// When the user's latest verification was created (Unix seconds): the re-send throttle.
    pub async fn latest_verification_at(&self, user_id: &str) -> sqlx::Result<Option<i64>> {
        let (latest,): (Option<i64>,) =
            sqlx::query_as("SELECT MAX(created_at) FROM email_verifications WHERE user_id = $1")
                .bind(user_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(latest)
    }

    /// The valid (unexpired, unused) verification with this token hash.
    pub async fn pending_verification(
        &self,
        token_hash: &str,
    ) -> sqlx::Result<Option<PendingVerification>> {
        sqlx::query_as(
            "SELECT user_id, email, email_display FROM email_verifications
             WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
    }

    /// Consumes the token (once: of concurrent requests one wins) and every other outstanding
    /// token of the user, makes its address the user's verified address, and writes `event`,
    /// in one transaction.
    pub async fn complete_verification(
        &self,
        token_hash: &str,
        verification: &PendingVerification,
        event: &OutboxEvent,
    ) -> sqlx::Result<VerifyOutcome> {
        let now = now();
        let mut transaction = self.pool.begin().await?;
        let consumed = sqlx::query(
            "UPDATE email_verifications SET used_at = $1
             WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&mut *transaction)
        .await?;
        if consumed.rows_affected() != 1 {
            transaction.rollback().await?;
            return Ok(VerifyOutcome::InvalidToken);
        }
        // Every other outstanding token of the user ends too: an older one for another address
        // must not move the account back.
        sqlx::query(
            "UPDATE email_verifications SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(&verification.user_id)
        .execute(&mut *transaction)
        .await?;
        let taken = sqlx::query("SELECT 1 FROM users WHERE email = $1 AND id <> $2")
            .bind(&verification.email)
            .bind(&verification.user_id)
            .fetch_optional(&mut *transaction)
            .await?
            .is_some();
        if taken {
            transaction.rollback().await?;
            return Ok(VerifyOutcome::EmailTaken);
        }
        let updated = sqlx::query(
            "UPDATE users SET email = $1, email_display = $2, email_verified_at = $3 WHERE id = $4",
        )
        .bind(&verification.email)
        .bind(&verification.email_display)
        .bind(now)
        .bind(&verification.user_id)
        .execute(&mut *transaction)
        .await;
        match updated {
            Ok(updated) if updated.rows_affected() == 1 => {}
            // The account is gone.
            Ok(_) => {
                transaction.rollback().await?;
                return Ok(VerifyOutcome::InvalidToken);
            }
            // The unique index: another account took the address in between.
            Err(sqlx::Error::Database(_)) => {
                transaction.rollback().await?;
                return Ok(VerifyOutcome::EmailTaken);
            }
            Err(error) => return Err(error),
        }
        insert_event(&mut transaction, event).await?;
        transaction.commit().await?;
        Ok(VerifyOutcome::Verified)
    }
}
