//! Storage: SQLite by default, PostgreSQL when the URL says so, through sqlx's `Any` driver and
//! one portable schema (TEXT and BIGINT only), built by the migrations in
//! `host/user-service/migrations/<backend>` (see [`schema`]). One module per aggregate; times
//! are Unix seconds except in the outbox, where all are microseconds (see [`clock`]).
//!
//! Every state change that produces an event writes the event into `outbox` in the same
//! transaction, so a crash can't lose one (the relay that delivers them is its own piece).

mod accounts;
mod clock;
mod outbox;
mod plugin_artifacts;
mod reset_tokens;
mod rollout;
mod schema;
mod sessions;
mod throttles;
mod users;
mod verifications;

pub use accounts::AccountDetails;
pub use clock::{monotonic_micros, now, now_micros, random_id};
pub use outbox::{DeadLetter, DeliveryFailure, DeliveryOutcome, DueEvent, OutboxEvent};
pub use plugin_artifacts::ArtifactRow;
pub use rollout::{DesiredChange, DesiredRow, FleetRow};
pub use sessions::{Revoke, StoredSession};
pub use users::User;
pub use verifications::{NewVerification, PendingVerification, VerifyOutcome};

use anyhow::Context as _;
use sqlx::{AnyPool, any::AnyPoolOptions};

/// The database.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
}

/// Which database the URL names; the migrations are per backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Store {
    /// Connects (creating the SQLite file and its directory when needed) and migrates the
    /// schema (adopting a database made before migrations).
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let url = if let Some(path) = url.strip_prefix("sqlite://") {
            let file = path.split('?').next().unwrap_or(path);
            if let Some(parent) = std::path::Path::new(file)
                .parent()
                .filter(|parent| !parent.as_os_str().is_empty())
            {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            if path.contains('?') {
                url.to_owned()
            } else {
                format!("{url}?mode=rwc")
            }
        } else {
            url.to_owned()
        };
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        let pool = AnyPoolOptions::new()
            // SQLite serialises writers anyway; one connection avoids "database is locked".
            .max_connections(if backend == Backend::Sqlite { 1 } else { 16 })
            .connect(&url)
            .await
            .map_err(|error| anyhow::anyhow!("cannot open database: {error}"))?;
        if backend == Backend::Sqlite {
            schema::switch_to_wal(&pool).await?;
            sqlx::query("PRAGMA synchronous = FULL")
                .execute(&pool)
                .await?;
        }
        schema::migrate(&pool, backend).await?;
        let store = Self { pool };
        store.canonicalize_emails().await?;
        Ok(store)
    }

    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// `$first, $first+1, ...`: `count` numbered placeholders.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
