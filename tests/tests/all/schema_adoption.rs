//! A database made by the version before `sqlx::migrate!` (its hand-made start-up DDL, copied
//! verbatim, and rows in every table) is adopted by the current code, on SQLite and on
//! PostgreSQL: migrations applied once, outbox times converted to microseconds, the
//! comma-separated `sinks_done` turned into the typed list, and its users can still log in.

use harness::{hibp::HibpServer, postgres, service::TestService};
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{AnyPool, any::AnyPoolOptions};
use user_service::store::Store;

/// The previous version's DDL, in the order its `Store::connect` ran it on a new database.
const OLD_SCHEMA: &[&str] = &[
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
    "CREATE TABLE IF NOT EXISTS client_login_failures (
        client TEXT PRIMARY KEY,
        failures BIGINT NOT NULL,
        last_failure_at BIGINT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS sessions (
        id TEXT PRIMARY KEY,
        token_hash TEXT NOT NULL UNIQUE,
        user_id TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        last_seen_at BIGINT NOT NULL,
        authenticated_with TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (user_id)",
    "CREATE TABLE IF NOT EXISTS email_verifications (
        token_hash TEXT PRIMARY KEY,
        user_id TEXT NOT NULL,
        email TEXT NOT NULL,
        email_display TEXT NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        used_at BIGINT
    )",
    "CREATE INDEX IF NOT EXISTS email_verifications_by_user ON email_verifications (user_id, created_at)",
    "ALTER TABLE users ADD COLUMN email_verified_at BIGINT",
    "ALTER TABLE users ADD COLUMN email_display TEXT",
    "ALTER TABLE outbox ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE outbox ADD COLUMN next_attempt_at BIGINT NOT NULL DEFAULT 0",
    "ALTER TABLE outbox ADD COLUMN claimed_until BIGINT",
    "ALTER TABLE outbox ADD COLUMN last_error TEXT",
    "ALTER TABLE outbox ADD COLUMN dead_at BIGINT",
    "ALTER TABLE outbox ADD COLUMN sinks_done TEXT NOT NULL DEFAULT ''",
    "CREATE INDEX IF NOT EXISTS outbox_by_aggregate ON outbox (aggregate_id, created_at)",
];

const PASSWORD: &str = "correct horse battery staple";
const SESSION_TOKEN: &str = "old-session-token";
const RESET_TOKEN_HASH: &str = "old-reset-token-hash";
/// Far enough ahead that nothing the test reads has expired.
const LATER: i64 = 4_000_000_000;
/// When the old code recorded the delivery and the death (Unix seconds, as it wrote them).
const DELIVERED_AT_S: i64 = 1_700_000_100;
const DEAD_AT_S: i64 = 1_700_000_200;

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Builds the old schema at `url` and fills every table as the old code would have.
async fn old_database(url: &str) {
    sqlx::any::install_default_drivers();
    let pool: AnyPool = AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    for statement in OLD_SCHEMA {
        sqlx::query(statement).execute(&pool).await.unwrap();
    }
    let hash = user_service::passwords::hash(PASSWORD.to_owned())
        .await
        .unwrap();
    let rows: &[(&str, Vec<Value>)] = &[
        (
            "INSERT INTO users (id, email, display_name, password_hash, created_at, failed_logins,
             reset_required, email_verified_at, email_display) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![
                text("old-ann"),
                text("ann@example.org"),
                text("Ann"),
                text(&hash),
                int(1_600_000_000),
                int(2),
                int(0),
                int(1_600_000_001),
                text("Ann@Example.org"),
            ],
        ),
        (
            "INSERT INTO reset_tokens (token_hash, user_id, expires_at) VALUES ($1, $2, $3)",
            vec![text(RESET_TOKEN_HASH), text("old-ann"), int(LATER)],
        ),
        (
            "INSERT INTO sessions (id, token_hash, user_id, created_at, expires_at, last_seen_at,
             authenticated_with) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            vec![
                text("old-session"),
                text(&sha256_hex(SESSION_TOKEN)),
                text("old-ann"),
                int(1_600_000_010),
                int(LATER),
                int(LATER - 10),
                text("password"),
            ],
        ),
        (
            "INSERT INTO email_verifications (token_hash, user_id, email, email_display, created_at,
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            vec![
                text("old-verification"),
                text("old-ann"),
                text("ann.new@example.org"),
                text("Ann.New@example.org"),
                int(1_600_000_020),
                int(LATER),
            ],
        ),
        (
            "INSERT INTO client_login_failures (client, failures, last_failure_at) VALUES ($1, $2, $3)",
            vec![text("192.0.2.7"), int(3), int(LATER - 5)],
        ),
        // Delivered to two sinks (seconds), dead after one sink (seconds), pending.
        (
            "INSERT INTO outbox (id, event_type, aggregate_id, payload, created_at, delivered_at,
             attempts, sinks_done) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            vec![
                text("event-delivered"),
                text("UserRegisteredEventV1"),
                text("old-ann"),
                text(r#"{"n":1}"#),
                int(1_700_000_000_000_001),
                int(DELIVERED_AT_S),
                int(0),
                text("file,http"),
            ],
        ),
        (
            "INSERT INTO outbox (id, event_type, aggregate_id, payload, created_at, attempts,
             last_error, dead_at, sinks_done) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            vec![
                text("event-dead"),
                text("PasswordResetRequestedEventV1"),
                text("old-ann"),
                text(r#"{"n":2}"#),
                int(1_700_000_000_000_002),
                int(5),
                text("http: consumer answered 422"),
                int(DEAD_AT_S),
                text("file"),
            ],
        ),
        (
            "INSERT INTO outbox (id, event_type, aggregate_id, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
            vec![
                text("event-pending"),
                text("EmailVerificationRequestedEventV1"),
                text("old-ann"),
                text(r#"{"n":3}"#),
                int(1_700_000_000_000_003),
            ],
        ),
    ];
    for (sql, values) in rows {
        let mut query = sqlx::query(sql);
        for value in values {
            query = match value {
                Value::Text(text) => query.bind(text.clone()),
                Value::Int(int) => query.bind(*int),
            };
        }
        query.execute(&pool).await.unwrap();
    }
    pool.close().await;
}

enum Value {
    Text(String),
    Int(i64),
}

fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

fn int(value: i64) -> Value {
    Value::Int(value)
}

/// Reads every table back through the current code.
async fn everything_reads_back(store: &Store) {
    let ann = store
        .user_by_email("ann@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            ann.id.as_str(),
            ann.email_display.as_str(),
            ann.display_name.as_deref(),
            ann.failed_logins,
            ann.reset_required
        ),
        ("old-ann", "Ann@Example.org", Some("Ann"), 2, false)
    );
    let details = store.account_details("old-ann").await.unwrap().unwrap();
    assert_eq!(
        (
            details.created_at,
            details.email_verified_at,
            details.pending_email.as_deref()
        ),
        (
            1_600_000_000,
            Some(1_600_000_001),
            Some("ann.new@example.org")
        )
    );
    assert_eq!(
        store
            .pending_verification("old-verification")
            .await
            .unwrap()
            .map(|pending| pending.email_display),
        Some("Ann.New@example.org".to_owned())
    );
    assert_eq!(
        store.reset_token_user(RESET_TOKEN_HASH).await.unwrap(),
        Some("old-ann".to_owned())
    );
    let session = store
        .session_by_token_hash(&sha256_hex(SESSION_TOKEN))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (session.id.as_str(), session.created_at, session.expires_at),
        ("old-session", 1_600_000_010, LATER)
    );
    assert_eq!(
        store
            .count_client_attempt("192.0.2.7", LATER, LATER - 60)
            .await
            .unwrap(),
        4,
        "the old count goes on"
    );

    // The outbox: one of each state, times in microseconds, sinks as a list.
    assert_eq!(store.outbox_counts().await.unwrap(), (1, 1, 1));
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (
            letters[0].event.id.as_str(),
            letters[0].attempts,
            letters[0].dead_at_micros,
            letters[0].sinks_done.clone()
        ),
        (
            "event-dead",
            5,
            Some(DEAD_AT_S * 1_000_000),
            vec!["file".to_owned()]
        )
    );
    assert_eq!(letters[0].event.payload, json!({ "n": 2 }));
    let due = store
        .due_events(user_service::store::now_micros(), 10)
        .await
        .unwrap();
    assert_eq!(
        due.iter()
            .map(|due| (due.event.id.as_str(), due.sinks_done.len()))
            .collect::<Vec<_>>(),
        [("event-pending", 0)]
    );
    // Replayed, the dead letter keeps the sink that took it.
    assert_eq!(
        store.replay_dead_letters(Some("event-dead")).await.unwrap(),
        1
    );
    let replayed = store
        .due_events(user_service::store::now_micros(), 10)
        .await
        .unwrap();
    assert_eq!(replayed[0].event.id, "event-dead");
    assert_eq!(replayed[0].sinks_done, ["file"]);
    // The delivery time is microseconds now: a cut-off just before it keeps the row, just
    // after it removes it (in seconds, either cut-off would have removed it).
    let delivered_micros = DELIVERED_AT_S * 1_000_000;
    assert_eq!(store.prune_delivered(delivered_micros).await.unwrap(), 0);
    assert_eq!(
        store.prune_delivered(delivered_micros + 1).await.unwrap(),
        1
    );
}

/// Old rows, the new code, and a login through the service.
async fn adopts(url: &str) {
    old_database(url).await;
    // Two replicas starting together on the old database: both come up.
    let (first, second) = tokio::join!(Store::connect(url), Store::connect(url));
    let store = first.unwrap();
    second.unwrap();
    everything_reads_back(&store).await;
    // Again: the migrations are recorded, nothing is converted twice.
    let again = Store::connect(url).await.unwrap();
    let letters = again.dead_letters(10).await.unwrap();
    assert!(letters.is_empty(), "replayed above");
    assert_eq!(again.outbox_counts().await.unwrap(), (2, 0, 0));

    let hibp = HibpServer::start(&[]).await;
    let service = TestService::start(&hibp.server.url(), None, |config| {
        config.database_url = url.to_owned();
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let login = client
        .post(service.url("/v1/sessions"))
        .json(&json!({ "email": "ann@example.org", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), reqwest::StatusCode::OK);
    let old_session = client
        .get(service.url("/v1/sessions/current"))
        .bearer_auth(SESSION_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(old_session.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn an_old_sqlite_database_is_adopted() {
    let dir = tempfile::tempdir().unwrap();
    adopts(&format!(
        "sqlite://{}/old.db?mode=rwc",
        dir.path().display()
    ))
    .await;
}

/// Replicas racing to migrate the same old SQLite file, many times over: whichever migrator
/// loses a migration to the other (its `ALTER TABLE` finds the column already added, or its
/// record the version already taken, or its switch to WAL mode the file's lock) retries, and
/// every replica comes up.
#[tokio::test]
async fn replicas_racing_on_an_old_sqlite_database_all_come_up() {
    // `SCHEMA_RACE_ROUNDS=500` to hunt a rarer race.
    let rounds = std::env::var("SCHEMA_RACE_ROUNDS")
        .ok()
        .and_then(|rounds| rounds.parse().ok())
        .unwrap_or(40);
    for round in 0..rounds {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/old.db?mode=rwc", dir.path().display());
        old_database(&url).await;
        let (first, second, third) = tokio::join!(
            Store::connect(&url),
            Store::connect(&url),
            Store::connect(&url)
        );
        for (replica, store) in [first, second, third].into_iter().enumerate() {
            let store = store.unwrap_or_else(|error| {
                panic!("round {round}, replica {replica}: {error:#}");
            });
            assert_eq!(store.outbox_counts().await.unwrap(), (1, 1, 1));
        }
    }
}

#[tokio::test]
async fn an_old_postgres_database_is_adopted() {
    let url = postgres::fresh_database()
        .await
        .expect("a PostgreSQL server (see tests/src/postgres.rs)");
    adopts(&url).await;
}

/// Replicas starting together on a new PostgreSQL database: sqlx's advisory lock lets one
/// apply the migrations; the others wait and find them applied.
#[tokio::test]
async fn replicas_migrate_a_new_postgres_database_together() {
    let url = postgres::fresh_database()
        .await
        .expect("a PostgreSQL server");
    let starts = (0..4).map(|_| Store::connect(&url));
    for store in futures_util::future::join_all(starts).await {
        assert!(store.unwrap().ping().await);
    }
}
