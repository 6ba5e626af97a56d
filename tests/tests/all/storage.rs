//! The storage contract, run on SQLite and on a real PostgreSQL server: the same SQL through
//! sqlx's `Any` driver must behave the same on both.

use harness::{
    hibp::HibpServer,
    http::{get_json, post},
    postgres,
    service::TestService,
};
use serde_json::json;
use user_service::store::{
    DeliveryFailure, DeliveryOutcome, OutboxEvent, Store, User, now_micros, random_id,
};

fn user(email: &str) -> User {
    User {
        id: random_id().unwrap(),
        email: email.to_owned(),
        email_display: email.to_owned(),
        display_name: Some("Test User".to_owned()),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
            .to_owned(),
        failed_logins: 0,
        reset_required: false,
    }
}

fn event(kind: &str, aggregate: &str) -> OutboxEvent {
    let id = random_id().unwrap();
    OutboxEvent {
        id: id.clone(),
        event_type: kind.to_owned(),
        aggregate_id: aggregate.to_owned(),
        payload: json!({ "id": id, "type": kind }),
    }
}

/// Stores the reset token `hash` for `user`, expiring at `expires_at`, with its event.
async fn create_reset_token(store: &Store, hash: &str, user: &str, expires_at: i64) {
    store
        .create_reset_token(
            hash,
            user,
            expires_at,
            &event("PasswordResetRequestedEventV1", user),
        )
        .await
        .unwrap();
}

/// Sets `user`'s password hash to `new_hash` with the reset token `hash`, with its event;
/// whether the token was accepted.
async fn reset_password(store: &Store, user: &str, new_hash: &str, hash: &str) -> bool {
    store
        .set_password(
            user,
            new_hash,
            Some(hash),
            &event("PasswordChangedEventV1", user),
        )
        .await
        .unwrap()
}

/// Every store operation the flows rely on.
async fn storage_contract(url: &str) {
    let store = Store::connect(url).await.unwrap();
    assert!(store.ping().await);
    let ann = user("ann@example.org");
    assert!(
        store
            .create_user(&ann, &event("UserRegisteredEventV1", &ann.id))
            .await
            .unwrap()
    );
    let twin = user("ann@example.org");
    assert!(
        !store
            .create_user(&twin, &event("UserRegisteredEventV1", &twin.id))
            .await
            .unwrap(),
        "emails are unique"
    );

    let loaded = store
        .user_by_email("ann@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            loaded.id.as_str(),
            loaded.display_name.as_deref(),
            loaded.failed_logins
        ),
        (ann.id.as_str(), Some("Test User"), 0)
    );
    assert!(
        store
            .user_by_email("nobody@example.org")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(store.record_failed_login(&ann.id).await.unwrap(), 1);
    assert_eq!(store.record_failed_login(&ann.id).await.unwrap(), 2);
    store.record_successful_login(&ann.id, true).await.unwrap();
    let loaded = store.user_by_id(&ann.id).await.unwrap().unwrap();
    assert_eq!((loaded.failed_logins, loaded.reset_required), (0, true));

    let far = user_service::store::now() + 3600;
    create_reset_token(&store, "hash-1", &ann.id, far).await;
    create_reset_token(&store, "hash-expired", &ann.id, 1).await;
    assert_eq!(
        store.reset_token_user("hash-1").await.unwrap().as_deref(),
        Some(ann.id.as_str())
    );
    assert_eq!(
        store.reset_token_user("hash-expired").await.unwrap(),
        None,
        "expired tokens are not found"
    );
    assert!(!reset_password(&store, &ann.id, "new-hash", "hash-expired").await);
    assert!(reset_password(&store, &ann.id, "new-hash", "hash-1").await);
    assert!(
        !reset_password(&store, &ann.id, "newer-hash", "hash-1").await,
        "single use"
    );
    let loaded = store.user_by_id(&ann.id).await.unwrap().unwrap();
    assert_eq!(
        (loaded.password_hash.as_str(), loaded.reset_required),
        ("new-hash", false)
    );

    let kinds: Vec<String> = store
        .pending_events()
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.event_type)
        .collect();
    assert_eq!(
        kinds,
        [
            "UserRegisteredEventV1",
            "PasswordResetRequestedEventV1",
            "PasswordResetRequestedEventV1",
            "PasswordChangedEventV1"
        ],
        "events in write order; the failed attempts wrote none"
    );
    outbox_delivery_contract(&store, &ann.id).await;
}

/// The relay's view of the outbox: one eligible event per user, leases, failures, dead
/// letters, replay. `ann` has four undelivered events (above).
async fn outbox_delivery_contract(store: &Store, ann: &str) {
    let now = now_micros();
    let due = store.due_events(now, 100).await.unwrap();
    assert_eq!(due.len(), 1, "only the oldest event of a user is eligible");
    let first = due[0].event.clone();
    assert_eq!(first.event_type, "UserRegisteredEventV1");
    assert_eq!(first.aggregate_id, ann);
    assert_eq!((due[0].attempts, due[0].sinks_done.len()), (0, 0));

    let ids = vec![first.id.clone(), "no-such-event".to_owned()];
    assert_eq!(
        store
            .claim_events(&ids, now, now + 1_000_000)
            .await
            .unwrap(),
        std::slice::from_ref(&first.id)
    );
    assert!(
        store
            .claim_events(&ids, now, now + 1_000_000)
            .await
            .unwrap()
            .is_empty(),
        "a live lease keeps other relays out"
    );
    assert!(store.due_events(now, 100).await.unwrap().is_empty());

    // A failed attempt, retried later, remembering the sink that took it.
    let done = vec!["file".to_owned()];
    let failure = |attempts, next_attempt_at, error: &str, dead| {
        DeliveryOutcome::Failed(DeliveryFailure {
            id: first.id.clone(),
            attempts,
            next_attempt_at,
            error: error.to_owned(),
            sinks_done: done.clone(),
            dead,
        })
    };
    store
        .record_deliveries(&[failure(
            1,
            now + 5_000_000,
            "http: consumer answered 503",
            false,
        )])
        .await
        .unwrap();
    assert!(
        store.due_events(now, 100).await.unwrap().is_empty(),
        "not due yet, and the user's later events wait behind it"
    );
    let later = store.due_events(now + 6_000_000, 100).await.unwrap();
    assert_eq!(later.len(), 1);
    assert_eq!(
        (later[0].attempts, later[0].sinks_done.clone()),
        (1, done.clone())
    );

    // Dead: listed, no longer holding back the user's next event.
    store
        .record_deliveries(&[failure(2, now, "http: consumer answered 422", true)])
        .await
        .unwrap();
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].event.id, first.id);
    assert_eq!(
        letters[0].last_error.as_deref(),
        Some("http: consumer answered 422")
    );
    assert_eq!(letters[0].attempts, 2);
    let next = store.due_events(now, 100).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].event.event_type, "PasswordResetRequestedEventV1");
    store
        .record_deliveries(&[DeliveryOutcome::Delivered {
            id: next[0].event.id.clone(),
            sinks_done: done.clone(),
        }])
        .await
        .unwrap();
    assert_eq!(store.outbox_counts().await.unwrap(), (2, 1, 1));

    // Replay: back in the queue, first in line again, with a fresh attempt count.
    assert_eq!(
        store.replay_dead_letters(Some("no-such-id")).await.unwrap(),
        0
    );
    assert_eq!(store.replay_dead_letters(Some(&first.id)).await.unwrap(), 1);
    let replayed = store.due_events(now, 100).await.unwrap();
    assert_eq!(replayed[0].event.id, first.id);
    assert_eq!(replayed[0].attempts, 0);
    assert_eq!(store.outbox_counts().await.unwrap(), (3, 0, 1));

    // Retention: only delivered events older than the cut-off go.
    assert_eq!(
        store
            .prune_delivered(now_micros() - 3_600_000_000)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .prune_delivered(now_micros() + 1_000_000)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.outbox_counts().await.unwrap(), (3, 0, 0));
}

#[tokio::test]
async fn storage_contract_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    storage_contract(&format!("sqlite://{}/store.db", dir.path().display())).await;
}

#[tokio::test]
async fn storage_contract_on_postgres() {
    let url = postgres::fresh_database()
        .await
        .expect("a PostgreSQL server (see tests/src/postgres.rs)");
    storage_contract(&url).await;
}

#[tokio::test]
async fn the_service_runs_on_postgres() {
    let url = postgres::fresh_database()
        .await
        .expect("a PostgreSQL server");
    let hibp = HibpServer::start(&[]).await;
    let service = TestService::start(&hibp.server.url(), None, |config| {
        config.database_url = url.clone();
    })
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let (register, _) = post(
        &client,
        service.url("/v1/users"),
        json!({ "email": "pg@example.org", "password": "correct horse battery staple" }),
    )
    .await;
    assert_eq!(register, reqwest::StatusCode::CREATED);
    let (login, _) = service
        .login(&client, "pg@example.org", "correct horse battery staple")
        .await;
    assert_eq!(login, reqwest::StatusCode::OK);
    let ready = get_json(&client, service.url("/readyz")).await;
    assert_eq!(ready["database"], true);
}
