//! The schema: `sqlx::migrate!` migrations, one directory per backend
//! (`host/user-service/migrations/{sqlite,postgres}`), and the adoption of databases created by
//! versions before them (no `_sqlx_migrations` table): the first migration is a baseline written
//! with `IF NOT EXISTS`, so it fits such a database once the columns those versions added over
//! time are there.

use super::Backend;
use anyhow::Context as _;
use sqlx::{
    AnyPool,
    migrate::{MigrateError, Migrator},
};

static SQLITE: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: Migrator = sqlx::migrate!("migrations/postgres");

/// Columns earlier versions added at start to tables created before them, as
/// `(table, column, DDL)`. PostgreSQL's baseline adds them itself (`ADD COLUMN IF NOT EXISTS`);
/// SQLite has no such clause, hence this list.
const LEGACY_SQLITE_COLUMNS: &[(&str, &str, &str)] = &[
    (
        "users",
        "email_verified_at",
        "ALTER TABLE users ADD COLUMN email_verified_at BIGINT",
    ),
    (
        "users",
        "email_display",
        "ALTER TABLE users ADD COLUMN email_display TEXT",
    ),
    (
        "outbox",
        "attempts",
        "ALTER TABLE outbox ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0",
    ),
    (
        "outbox",
        "next_attempt_at",
        "ALTER TABLE outbox ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0",
    ),
    (
        "outbox",
        "claimed_until",
        "ALTER TABLE outbox ADD COLUMN claimed_until BIGINT",
    ),
    (
        "outbox",
        "last_error",
        "ALTER TABLE outbox ADD COLUMN last_error TEXT",
    ),
    (
        "outbox",
        "dead_at",
        "ALTER TABLE outbox ADD COLUMN dead_at BIGINT",
    ),
    (
        "outbox",
        "sinks_done",
        "ALTER TABLE outbox ADD COLUMN sinks_done TEXT NOT NULL DEFAULT ''",
    ),
];

/// Brings the database to the newest schema: adopts a pre-migrations SQLite database, then runs
/// the backend's migrations (on PostgreSQL under sqlx's advisory lock, so replicas starting
/// together apply each migration once).
pub(super) async fn migrate(pool: &AnyPool, backend: Backend) -> anyhow::Result<()> {
    match backend {
        Backend::Sqlite => {
            adopt_legacy_sqlite(pool).await?;
            run_sqlite(pool).await
        }
        Backend::Postgres => POSTGRES.run(pool).await,
    }
    .context("cannot apply the database migrations")
}

/// Runs the SQLite migrations, again while another process holds the file's write lock: sqlx
/// takes no lock on SQLite, and a migrator whose read snapshot another one's commit outdated
/// gets `SQLITE_BUSY` at once rather than after the busy timeout. And a migrator that read the
/// applied list just before another one committed a migration runs it again: it fails on the
/// record's unique version (`SQLITE_CONSTRAINT`), or earlier on the migration's own statement
/// (`duplicate column name` for an `ALTER TABLE ... ADD COLUMN`), which is why a failed
/// migration that is recorded as applied by the time we look is a lost race too. Safe to
/// repeat: each migration commits with its record in one transaction (the failed one rolled
/// back whole, its conversion included), so a retry skips what is done.
async fn run_sqlite(pool: &AnyPool) -> Result<(), MigrateError> {
    const ATTEMPTS: u32 = 100;
    let mut attempt = 1;
    loop {
        match SQLITE.run(pool).await {
            Err(error)
                if attempt < ATTEMPTS
                    && (lost_a_race(&error) || applied_meanwhile(pool, &error).await) =>
            {
                attempt += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            outcome => return outcome,
        }
    }
}

/// True when `error` is a failed migration that another migrator has recorded as applied
/// since: it ran the same statements first.
async fn applied_meanwhile(pool: &AnyPool, error: &MigrateError) -> bool {
    let MigrateError::ExecuteMigration(_, version) = error else {
        return false;
    };
    // `version` is the migration's number from sqlx, not input.
    let sql = format!("SELECT 1 FROM _sqlx_migrations WHERE version = {version} AND success");
    matches!(sqlx::query(&sql).fetch_optional(pool).await, Ok(Some(_)))
}

/// True for `SQLITE_BUSY`, `SQLITE_LOCKED` or `SQLITE_CONSTRAINT` (any extended code): what a
/// migrator racing another one on the same file meets.
fn lost_a_race(error: &MigrateError) -> bool {
    let (MigrateError::Execute(error) | MigrateError::ExecuteMigration(error, _)) = error else {
        return false;
    };
    locked_by_another(error) || sqlite_primary_code(error) == Some(SQLITE_CONSTRAINT)
}

const SQLITE_BUSY: i32 = 5;
const SQLITE_LOCKED: i32 = 6;
const SQLITE_CONSTRAINT: i32 = 19;

/// The pause before a statement that lost a race to another process on the file runs again.
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// True for `SQLITE_BUSY` or `SQLITE_LOCKED`: another connection holds the lock it needs.
fn locked_by_another(error: &sqlx::Error) -> bool {
    sqlite_primary_code(error).is_some_and(|code| matches!(code, SQLITE_BUSY | SQLITE_LOCKED))
}

/// The SQLite primary result code of a database error (extended codes carry it in their low
/// byte).
fn sqlite_primary_code(error: &sqlx::Error) -> Option<i32> {
    let sqlx::Error::Database(database) = error else {
        return None;
    };
    database
        .code()
        .and_then(|code| code.parse::<i32>().ok())
        .map(|code| code & 0xff)
}

/// Puts the file in WAL mode (persistent; readers then never wait for the writer). Replicas
/// opening the same file for the first time race for the exclusive lock the switch needs, and
/// SQLite answers the loser `SQLITE_BUSY` at once, without its busy timeout: hence the retries,
/// for up to ten seconds.
pub(super) async fn switch_to_wal(pool: &AnyPool) -> anyhow::Result<()> {
    const ATTEMPTS: u32 = 200;
    let mut attempt = 1;
    loop {
        match sqlx::query("PRAGMA journal_mode = WAL").execute(pool).await {
            Err(error) if attempt < ATTEMPTS && locked_by_another(&error) => {
                attempt += 1;
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            outcome => {
                return outcome
                    .map(drop)
                    .context("cannot switch the database to WAL mode");
            }
        }
    }
}

/// Adds the columns of [`LEGACY_SQLITE_COLUMNS`] a database made before migrations lacks. A
/// no-op on a database the migrator manages, or on a new one.
async fn adopt_legacy_sqlite(pool: &AnyPool) -> anyhow::Result<()> {
    if answers(pool, "SELECT 1 FROM _sqlx_migrations LIMIT 1").await {
        return Ok(());
    }
    for (table, column, ddl) in LEGACY_SQLITE_COLUMNS {
        if !answers(pool, &format!("SELECT 1 FROM {table} LIMIT 1")).await {
            // No such table: the baseline creates it whole.
            continue;
        }
        let probe = format!("SELECT {column} FROM {table} LIMIT 1");
        if answers(pool, &probe).await {
            continue;
        }
        if let Err(error) = sqlx::query(ddl).execute(pool).await
            // Another process on this file may have added it first.
            && !answers(pool, &probe).await
        {
            return Err(error).with_context(|| format!("cannot add {table}.{column}"));
        }
    }
    Ok(())
}

/// True when `sql` runs (the table or column it names exists).
async fn answers(pool: &AnyPool, sql: &str) -> bool {
    sqlx::query(sql).fetch_optional(pool).await.is_ok()
}
