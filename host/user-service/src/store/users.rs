//! The `users` table: credentials, failed-login count, the reset flag, and the migration of
//! stored addresses to their canonical form.

use super::{OutboxEvent, Revoke, Store, now, outbox::insert_event, reset_tokens};
use sqlx::{Any, FromRow, Transaction};

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

/// The columns [`UserRow`] reads.
const COLUMNS: &str =
    "id, email, display_name, password_hash, failed_logins, reset_required, email_display";

/// A `users` row as stored (flags as integers, the display address possibly unset).
#[derive(FromRow)]
struct UserRow {
    id: String,
    email: String,
    display_name: Option<String>,
    password_hash: String,
    failed_logins: i64,
    reset_required: i64,
    email_display: Option<String>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            // A row not yet migrated shows its stored address.
            email_display: row.email_display.unwrap_or_else(|| row.email.clone()),
            id: row.id,
            email: row.email,
            display_name: row.display_name,
            password_hash: row.password_hash,
            failed_logins: row.failed_logins,
            reset_required: row.reset_required != 0,
        }
    }
}

/// Inserts `user` unless its email is taken (`Ok(false)`).
pub(super) async fn insert_user(
    transaction: &mut Transaction<'_, Any>,
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

impl Store {
    /// Gives every row stored before canonical addresses its canonical `email` and its
    /// `email_display` (the address as it was stored). Rows that cannot be migrated are logged
    /// and left as they are, still marked unmigrated: an address the canonical rules refuse, or
    /// one whose canonical form another account already has (the duplicates these rules now
    /// prevent; an operator merges them). Runs at every start; a no-op once done.
    pub async fn canonicalize_emails(&self) -> anyhow::Result<()> {
        // Oldest first: of two rows with one canonical form, the older account keeps it.
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, email FROM users WHERE email_display IS NULL ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, stored) in rows {
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
                // Any other error (a busy database, a lost connection) fails the start.
                Ok(_) => {
                    tracing::warn!(user = %id, "another account has this address's canonical form; left as it is");
                }
                Err(sqlx::Error::Database(error)) if error.is_unique_violation() => {
                    tracing::warn!(user = %id, "another account has this address's canonical form; left as it is");
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// The user with this canonical address.
    pub async fn user_by_email(&self, email: &str) -> sqlx::Result<Option<User>> {
        let row: Option<UserRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE email = $1"))
                .bind(email)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(User::from))
    }

    /// The user with this id.
    pub async fn user_by_id(&self, id: &str) -> sqlx::Result<Option<User>> {
        let row: Option<UserRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM users WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(User::from))
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
        let (count,): (i64,) = sqlx::query_as(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1 RETURNING failed_logins",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(count)
    }

    /// Counts a login attempt on the account with this canonical address before its password
    /// is checked, and returns the user with `failed_logins` including this attempt: the
    /// increment and the read are one statement, so concurrent attempts each get their own
    /// count and every decision follows from it. `None` when there is no such account.
    pub async fn count_login_attempt(&self, email: &str) -> sqlx::Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(&format!(
            "UPDATE users SET failed_logins = failed_logins + 1 WHERE email = $1 RETURNING {COLUMNS}"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(User::from))
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
        if let Some(token_hash) = reset_token_hash
            && !reset_tokens::consume(&mut transaction, token_hash).await?
        {
            transaction.rollback().await?;
            return Ok(false);
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
}
