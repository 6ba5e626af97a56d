//! The account beyond credentials: the profile (creation and verification times, a pending
//! address change, the display name) and deleting an account.

use super::{OutboxEvent, Store, now, outbox::insert_event};

/// What the profile shows beyond [`User`].
#[derive(Debug, Clone)]
pub struct AccountDetails {
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; `None` until the current address is verified.
    pub email_verified_at: Option<i64>,
    /// The address of a pending change (verification sent, not yet completed).
    pub pending_email: Option<String>,
}

impl Store {
    /// Creation time, verification time and pending address of a user.
    pub async fn account_details(&self, user_id: &str) -> sqlx::Result<Option<AccountDetails>> {
        let Some((created_at, email_verified_at, current)): Option<(i64, Option<i64>, String)> =
            sqlx::query_as("SELECT created_at, email_verified_at, email FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let pending: Option<(String,)> = sqlx::query_as(
            "SELECT email FROM email_verifications WHERE user_id = $1 AND used_at IS NULL AND expires_at > $2
             AND email <> $3 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(user_id)
        .bind(now())
        .bind(&current)
        .fetch_optional(&self.pool)
        .await?;
        Ok(Some(AccountDetails {
            created_at,
            email_verified_at,
            pending_email: pending.map(|(email,)| email),
        }))
    }

    /// Sets (or clears) the display name; `false` when there is no such user.
    pub async fn set_display_name(
        &self,
        user_id: &str,
        display_name: Option<&str>,
    ) -> sqlx::Result<bool> {
        let updated = sqlx::query("UPDATE users SET display_name = $1 WHERE id = $2")
            .bind(display_name)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(updated.rows_affected() == 1)
    }

    /// Deletes a user with its sessions, reset tokens and verifications, and writes `event`
    /// (`UserDeletedEventV1`), in one transaction. `false` when there was no such user.
    pub async fn delete_user(&self, user_id: &str, event: &OutboxEvent) -> sqlx::Result<bool> {
        let mut transaction = self.pool.begin().await?;
        for table in ["sessions", "reset_tokens", "email_verifications"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *transaction)
                .await?;
        }
        let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
        if deleted.rows_affected() != 1 {
            transaction.rollback().await?;
            return Ok(false);
        }
        insert_event(&mut transaction, event).await?;
        transaction.commit().await?;
        Ok(true)
    }
}
