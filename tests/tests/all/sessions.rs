//! Sessions, email verification and the account endpoints, end to end over HTTP, each scenario
//! on SQLite and on a real PostgreSQL server: register → verify with the token from the event →
//! log in → whoami → log out; second devices, "revoke others", absolute and idle expiry,
//! tokens never stored in plaintext, password change and reset revoking sessions, account
//! deletion, and attacks (forged, garbage and truncated tokens, another user's token, reused
//! verification tokens, concurrent races).

use harness::{
    hibp::HibpServer,
    http::{self, Answer},
    postgres,
    service::{ADMIN_TOKEN, TestService},
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;
use user_service::ServiceConfig;

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "the second passphrase of the year";

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sqlite,
    Postgres,
}

/// A service on `backend` (configured by `tweak` too) and a client for it.
struct Api {
    service: TestService,
    client: Client,
    _hibp: HibpServer,
    backend: Backend,
}

impl Api {
    async fn start(backend: Backend, tweak: impl FnOnce(&mut ServiceConfig)) -> Self {
        let hibp = HibpServer::start(&[]).await;
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(
                postgres::fresh_database()
                    .await
                    .expect("a PostgreSQL database"),
            ),
        };
        let service = TestService::start(&hibp.server.url(), None, |config| {
            if let Some(url) = database {
                config.database_url = url;
            }
            tweak(config);
        })
        .await
        .expect("the service starts");
        Self {
            service,
            client: Client::new(),
            _hibp: hibp,
            backend,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        http::call(&self.client, method, self.service.url(path), bearer, body).await
    }

    async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> Answer {
        self.call(Method::POST, path, bearer, Some(body)).await
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> Answer {
        self.call(Method::GET, path, bearer, None).await
    }

    async fn delete(&self, path: &str, bearer: Option<&str>, body: Option<Value>) -> Answer {
        self.call(Method::DELETE, path, bearer, body).await
    }

    /// Registers `email`; returns the user id and the `Location` header.
    async fn register(&self, email: &str) -> (String, String) {
        let answer = self
            .post(
                "/v1/users",
                None,
                json!({ "email": email, "password": PASSWORD, "display_name": "Ann" }),
            )
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        (
            answer.body["id"].as_str().expect("an id").to_owned(),
            answer.location.expect("a Location header"),
        )
    }

    /// Logs in; returns the session token and the session.
    async fn login(&self, email: &str, password: &str) -> (String, Value) {
        let answer = self.try_login(email, password).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        (
            answer.body["session_token"]
                .as_str()
                .expect("a session token")
                .to_owned(),
            answer.body["session"].clone(),
        )
    }

    /// Tries to log in (`POST /v1/sessions`); the answer, whatever it is.
    async fn try_login(&self, email: &str, password: &str) -> Answer {
        self.post(
            "/v1/sessions",
            None,
            json!({ "email": email, "password": password }),
        )
        .await
    }

    /// Presents a verification token (`POST /v1/email/verifications`).
    async fn verify_email(&self, token: &str) -> Answer {
        self.post("/v1/email/verifications", None, json!({ "token": token }))
            .await
    }

    /// `PATCH /v1/users/me` with `body`, as the holder of the session `token`.
    async fn patch_me(&self, token: &str, body: Value) -> Answer {
        self.call(Method::PATCH, "/v1/users/me", Some(token), Some(body))
            .await
    }

    /// `DELETE /v1/users/me` proving `current_password`, as the holder of the session `token`.
    async fn delete_me(&self, token: &str, current_password: &str) -> Answer {
        self.delete(
            "/v1/users/me",
            Some(token),
            Some(json!({ "current_password": current_password })),
        )
        .await
    }

    /// `POST /v1/password/change` with `body`, with the session `bearer` when given.
    async fn change_password(&self, bearer: Option<&str>, body: Value) -> Answer {
        self.post("/v1/password/change", bearer, body).await
    }

    async fn whoami(&self, token: &str) -> Answer {
        self.get("/v1/sessions/current", Some(token)).await
    }

    /// Delivered events of `event_type`, in order.
    async fn events(&self, event_type: &str) -> Vec<Value> {
        self.service
            .delivered_events()
            .await
            .into_iter()
            .filter(|event| event["type"] == event_type)
            .collect()
    }

    /// The latest verification token sent to `email`.
    async fn verification_token(&self, email: &str) -> String {
        self.events("EmailVerificationRequestedEventV1")
            .await
            .iter()
            .rev()
            .find(|event| event["data"]["email"] == email)
            .and_then(|event| event["data"]["verificationToken"].as_str())
            .expect("a verification event for the address")
            .to_owned()
    }

    /// Everything the database holds, as text: SQLite's files byte for byte (freed pages and
    /// the write-ahead log included), or every PostgreSQL table's rows.
    async fn database_text(&self) -> String {
        match self.backend {
            Backend::Sqlite => {
                let mut text = String::new();
                for file in ["users.db", "users.db-wal"] {
                    if let Ok(bytes) = std::fs::read(self.service.data.path().join(file)) {
                        text.push_str(&String::from_utf8_lossy(&bytes));
                    }
                }
                text
            }
            Backend::Postgres => {
                use sqlx::Connection;
                let url = &self.service.state.config.database_url;
                let mut connection = sqlx::PgConnection::connect(url).await.expect("connects");
                let mut text = String::new();
                for table in [
                    "users",
                    "sessions",
                    "email_verifications",
                    "reset_tokens",
                    "outbox",
                    "client_login_failures",
                ] {
                    let row: (Option<String>,) =
                        sqlx::query_as(&format!("SELECT string_agg(t::text, '|') FROM {table} t"))
                            .fetch_one(&mut connection)
                            .await
                            .expect("reads the table");
                    text.push_str(&row.0.unwrap_or_default());
                }
                text
            }
        }
    }

    /// Whether the store still has a session for this token.
    async fn session_stored(&self, token: &str) -> bool {
        self.service
            .state
            .store
            .session_by_token_hash(&hex::encode(Sha256::digest(token.as_bytes())))
            .await
            .expect("the store answers")
            .is_some()
    }
}

fn kind(answer: &Answer) -> &str {
    answer.problem_kind()
}

/// A `401 unauthenticated` problem document.
fn assert_unauthenticated(answer: &Answer, what: &str) {
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "{what}: {}",
        answer.body
    );
    assert_eq!(answer.content_type, "application/problem+json", "{what}");
    assert_eq!(kind(answer), "unauthenticated", "{what}: {}", answer.body);
}

/// Runs a scenario on SQLite and on PostgreSQL.
macro_rules! on_both_backends {
    ($scenario:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test]
        async fn $sqlite() {
            $scenario(Backend::Sqlite).await;
        }

        #[tokio::test]
        async fn $postgres() {
            $scenario(Backend::Postgres).await;
        }
    };
}

// -------------------------------------------------------------------------------------------
// Register → verify → login → whoami → logout; second devices; revoke others.
// -------------------------------------------------------------------------------------------

async fn lifecycle(backend: Backend) {
    let api = Api::start(backend, |config| {
        config.flows.require_verified_email = true;
    })
    .await;
    let (id, location) = api.register("ann@example.org").await;
    assert_eq!(location, format!("/v1/users/{id}"));

    // Unverified: the right password is refused with its own problem type; a wrong one is not
    // told about verification.
    let answer = api.try_login("ann@example.org", PASSWORD).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    assert_eq!(kind(&answer), "email-not-verified");
    let answer = api.try_login("ann@example.org", NEW_PASSWORD).await;
    assert_eq!(kind(&answer), "invalid-credentials");

    // Verify with the token from the event (delivered through the outbox).
    let requested = api.events("EmailVerificationRequestedEventV1").await;
    assert_eq!(requested.len(), 1);
    let data = &requested[0]["data"];
    assert_eq!(data["userId"], id.as_str());
    assert_eq!(data["purpose"], "registration");
    let token = data["verificationToken"].as_str().unwrap().to_owned();
    assert_eq!(
        data["verificationLink"],
        format!("http://127.0.0.1:8080/verify-email?token={token}")
    );
    let answer = api.verify_email(&token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["email_verified"], true);
    let verified = api.events("EmailVerifiedEventV1").await;
    assert_eq!(verified.len(), 1);
    assert_eq!(verified[0]["data"]["email"], "ann@example.org");
    // Single use.
    let answer = api.verify_email(&token).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(kind(&answer), "invalid-verification-token");

    // Log in on two devices.
    let (laptop, session) = api.login("ann@example.org", PASSWORD).await;
    assert_eq!(laptop.len(), 43, "256 bits, base64url");
    assert_eq!(session["user_id"], id.as_str());
    assert_eq!(session["authenticated_with"], "password");
    let expires = session["expires_at"].as_i64().unwrap();
    let created = session["created_at"].as_i64().unwrap();
    assert_eq!(
        expires - created,
        30 * 24 * 3600,
        "NIST's 30 days by default"
    );
    assert_eq!(
        session["idle_expires_at"].as_i64().unwrap() - created,
        24 * 3600
    );
    let (phone, _) = api.login("ann@example.org", PASSWORD).await;

    let me = api.whoami(&laptop).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["session"]["id"], session["id"]);
    assert_eq!(me.body["user"]["id"], id.as_str());
    assert_eq!(me.body["user"]["email_verified"], true);
    assert!(me.body["user"].get("password_hash").is_none());
    // Within the touch interval a use writes nothing: the idle expiry does not move.
    let again = api.whoami(&laptop).await;
    assert_eq!(
        again.body["session"]["idle_expires_at"],
        me.body["session"]["idle_expires_at"]
    );
    // The registration's Location works, for the user itself.
    let answer = api.get(&location, Some(&laptop)).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["email"], "ann@example.org");
    let answer = api.get("/v1/users/me", Some(&phone)).await;
    assert_eq!(answer.body["id"], id.as_str());

    let list = api.get("/v1/sessions", Some(&phone)).await;
    let sessions = list.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);
    assert!(!list.body.to_string().contains(&laptop) && !list.body.to_string().contains(&phone));

    // Log out the laptop: the phone lives on.
    let answer = api
        .delete("/v1/sessions/current", Some(&laptop), None)
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT);
    assert_unauthenticated(&api.whoami(&laptop).await, "after logout");
    assert_eq!(api.whoami(&phone).await.status, StatusCode::OK);
    assert!(!api.session_stored(&laptop).await, "logout deletes the row");

    // A third device; the phone revokes every other session.
    let (tablet, _) = api.login("ann@example.org", PASSWORD).await;
    let answer = api.delete("/v1/sessions", Some(&phone), None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["revoked"], 1);
    assert_unauthenticated(&api.whoami(&tablet).await, "revoked by another device");
    assert_eq!(api.whoami(&phone).await.status, StatusCode::OK);

    // No token is stored in plaintext; its SHA-256 is.
    let stored = api.database_text().await;
    for token in [&laptop, &phone, &tablet] {
        assert!(
            !stored.contains(token.as_str()),
            "a session token in the database"
        );
    }
    assert!(stored.contains(&hex::encode(Sha256::digest(phone.as_bytes()))));
}

on_both_backends!(
    lifecycle,
    register_verify_login_whoami_logout_and_revoke_others_on_sqlite,
    register_verify_login_whoami_logout_and_revoke_others_on_postgres
);

// -------------------------------------------------------------------------------------------
// Absolute and idle expiry.
// -------------------------------------------------------------------------------------------

async fn expiry(backend: Backend) {
    // Absolute: 2 s, however much the session is used.
    let api = Api::start(backend, |config| {
        config.sessions.absolute_lifetime_s = 2;
        config.sessions.touch_interval_s = 0;
    })
    .await;
    api.register("abs@example.org").await;
    let (token, session) = api.login("abs@example.org", PASSWORD).await;
    let (never_used, _) = api.login("abs@example.org", PASSWORD).await;
    assert_eq!(
        session["expires_at"].as_i64().unwrap() - session["created_at"].as_i64().unwrap(),
        2
    );
    assert_eq!(api.whoami(&token).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_unauthenticated(&api.whoami(&token).await, "past the absolute expiry");
    assert!(
        !api.session_stored(&token).await,
        "an expired session is deleted when met"
    );
    // One never presented again is deleted by the pruning logins trigger now and then.
    assert!(api.session_stored(&never_used).await);
    let pruned = api
        .service
        .state
        .store
        .prune_sessions(86_400)
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    assert!(!api.session_stored(&never_used).await);

    // Idle: 3 s; each use extends it (every use is recorded with touch-interval-s = 0).
    let api = Api::start(backend, |config| {
        config.sessions.idle_timeout_s = 3;
        config.sessions.touch_interval_s = 0;
    })
    .await;
    api.register("idle@example.org").await;
    let (token, _) = api.login("idle@example.org", PASSWORD).await;
    let (unused, _) = api.login("idle@example.org", PASSWORD).await;
    let mut last_idle_expiry = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let me = api.whoami(&token).await;
        assert_eq!(
            me.status,
            StatusCode::OK,
            "used every 1.5 s, the session lives on"
        );
        let idle_expiry = me.body["session"]["idle_expires_at"].as_i64().unwrap();
        assert!(idle_expiry >= last_idle_expiry);
        last_idle_expiry = idle_expiry;
    }
    // 4.5 s after login the session used all along lives; the one never used is gone.
    assert_unauthenticated(&api.whoami(&unused).await, "idle longer than the timeout");
    let list = api.get("/v1/sessions", Some(&token)).await;
    assert_eq!(list.body["sessions"].as_array().unwrap().len(), 1);
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_unauthenticated(&api.whoami(&token).await, "idle-expired");
}

on_both_backends!(
    expiry,
    expired_and_idle_expired_sessions_are_refused_on_sqlite,
    expired_and_idle_expired_sessions_are_refused_on_postgres
);

// -------------------------------------------------------------------------------------------
// Password change and reset revoke sessions.
// -------------------------------------------------------------------------------------------

async fn password_changes(backend: Backend) {
    let api = Api::start(backend, |_| {}).await;
    api.register("pat@example.org").await;
    let (laptop, _) = api.login("pat@example.org", PASSWORD).await;
    let (phone, _) = api.login("pat@example.org", PASSWORD).await;

    // With a session: the current password is still proven.
    let answer = api
        .change_password(
            Some(&laptop),
            json!({ "current_password": "not the password at all", "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(kind(&answer), "invalid-credentials");
    // Another account's email with this session is refused.
    let answer = api.change_password(Some(&laptop), json!({ "email": "other@example.org", "current_password": PASSWORD, "new_password": NEW_PASSWORD })).await;
    assert_eq!(kind(&answer), "invalid-credentials");
    let answer = api
        .change_password(
            Some(&laptop),
            json!({ "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    assert_eq!(
        api.whoami(&laptop).await.status,
        StatusCode::OK,
        "this session stays"
    );
    assert_unauthenticated(
        &api.whoami(&phone).await,
        "other sessions end with a change",
    );
    // Neither a session nor an email: 401.
    let answer = api
        .change_password(
            None,
            json!({ "current_password": NEW_PASSWORD, "new_password": PASSWORD }),
        )
        .await;
    assert_unauthenticated(&answer, "change without a session or an email");

    // A completed reset ends every session.
    let (tablet, _) = api.login("pat@example.org", NEW_PASSWORD).await;
    let answer = api
        .post(
            "/v1/password/reset-requests",
            None,
            json!({ "email": "pat@example.org" }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
    let token = api.events("PasswordResetRequestedEventV1").await[0]["data"]["resetToken"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = api
        .post(
            "/v1/password/resets",
            None,
            json!({ "token": token, "new_password": "a brand new passphrase for spring" }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    assert_unauthenticated(&api.whoami(&laptop).await, "reset ends every session");
    assert_unauthenticated(&api.whoami(&tablet).await, "reset ends every session");

    // The email form (no session) ends every session too.
    let (desk, _) = api
        .login("pat@example.org", "a brand new passphrase for spring")
        .await;
    let answer = api.change_password(None, json!({ "email": "pat@example.org", "current_password": "a brand new passphrase for spring", "new_password": NEW_PASSWORD })).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);
    assert_unauthenticated(
        &api.whoami(&desk).await,
        "the email form ends every session",
    );

    let changed = api.events("PasswordChangedEventV1").await;
    let revoked: Vec<(&str, &str)> = changed
        .iter()
        .map(|event| {
            (
                event["data"]["reason"].as_str().unwrap_or(""),
                event["data"]["sessionsRevoked"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        revoked,
        [("change", "others"), ("reset", "all"), ("change", "all")]
    );
}

on_both_backends!(
    password_changes,
    password_change_revokes_other_sessions_and_reset_revokes_all_on_sqlite,
    password_change_revokes_other_sessions_and_reset_revokes_all_on_postgres
);

// -------------------------------------------------------------------------------------------
// Account deletion.
// -------------------------------------------------------------------------------------------

async fn deletion(backend: Backend) {
    let api = Api::start(backend, |_| {}).await;
    let (id, location) = api.register("del@example.org").await;
    let (laptop, _) = api.login("del@example.org", PASSWORD).await;
    let (phone, _) = api.login("del@example.org", PASSWORD).await;

    let answer = api.delete_me(&laptop, NEW_PASSWORD).await;
    assert_eq!(kind(&answer), "invalid-credentials");
    let answer = api.delete_me(&laptop, PASSWORD).await;
    assert_eq!(answer.status, StatusCode::NO_CONTENT, "{}", answer.body);

    for token in [&laptop, &phone] {
        assert_unauthenticated(&api.whoami(token).await, "a deleted user's session");
        assert!(!api.session_stored(token).await, "its sessions are gone");
    }
    let answer = api.try_login("del@example.org", PASSWORD).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(kind(&answer), "invalid-credentials");
    let answer = api.get(&location, Some(ADMIN_TOKEN)).await;
    assert_eq!(
        answer.status,
        StatusCode::NOT_FOUND,
        "an admin finds nothing either"
    );
    assert!(
        api.service
            .state
            .store
            .user_by_id(&id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        api.service
            .state
            .store
            .active_sessions(&id, i64::MAX / 2)
            .await
            .unwrap()
            .is_empty()
    );
    let deleted = api.events("UserDeletedEventV1").await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["data"]["userId"], id.as_str());
    // The address is free again.
    api.register("del@example.org").await;
}

on_both_backends!(
    deletion,
    a_deleted_user_cannot_log_in_and_its_sessions_are_gone_on_sqlite,
    a_deleted_user_cannot_log_in_and_its_sessions_are_gone_on_postgres
);

// -------------------------------------------------------------------------------------------
// Email change and re-sent verifications.
// -------------------------------------------------------------------------------------------

async fn email_change(backend: Backend) {
    let api = Api::start(backend, |_| {}).await;
    let (id, _) = api.register("old@example.org").await;
    let (token, _) = api.login("old@example.org", PASSWORD).await;
    let registration_token = api.verification_token("old@example.org").await;

    // Display name only: no password needed.
    let answer = api
        .patch_me(&token, json!({ "display_name": "  Ann B.  " }))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body["display_name"], "Ann B.");
    let answer = api.patch_me(&token, json!({ "display_name": null })).await;
    assert_eq!(answer.body["display_name"], Value::Null);

    // The email needs the current password.
    let answer = api
        .patch_me(&token, json!({ "email": "new@example.org" }))
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let answer = api
        .patch_me(
            &token,
            json!({ "email": "new@example.org", "current_password": NEW_PASSWORD }),
        )
        .await;
    assert_eq!(kind(&answer), "invalid-credentials");
    let answer = api
        .patch_me(
            &token,
            json!({ "email": "New@Example.org", "current_password": PASSWORD }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(
        answer.body["email"], "old@example.org",
        "kept until verified"
    );
    assert_eq!(answer.body["pending_email"], "new@example.org");
    // Until verified, the old address logs in and the new one does not.
    api.login("old@example.org", PASSWORD).await;
    let answer = api.try_login("new@example.org", PASSWORD).await;
    assert_eq!(kind(&answer), "invalid-credentials");

    let change_token = api.verification_token("new@example.org").await;
    let requested = api.events("EmailVerificationRequestedEventV1").await;
    let change = requested.last().unwrap();
    assert_eq!(change["data"]["purpose"], "email-change");
    assert_eq!(change["data"]["currentEmail"], "old@example.org");
    let answer = api.verify_email(&change_token).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let me = api.get("/v1/users/me", Some(&token)).await;
    assert_eq!(me.body["email"], "new@example.org");
    assert_eq!(me.body["email_display"], "New@Example.org");
    assert_eq!(me.body["email_verified"], true);
    assert_eq!(me.body["pending_email"], Value::Null);
    api.login("new@example.org", PASSWORD).await;
    let answer = api.try_login("old@example.org", PASSWORD).await;
    assert_eq!(kind(&answer), "invalid-credentials");
    let verified = api.events("EmailVerifiedEventV1").await;
    assert_eq!(
        verified.last().unwrap()["data"]["previousEmail"],
        "old@example.org"
    );

    // A verification ends every other outstanding one: the registration's token for the old
    // address cannot move the account back.
    let answer = api.verify_email(&registration_token).await;
    assert_eq!(kind(&answer), "invalid-verification-token");

    // Re-sending: always 202; throttled per account.
    let resend = |email: &'static str| {
        api.post(
            "/v1/email/verification-requests",
            None,
            json!({ "email": email }),
        )
    };
    api.register("unverified@example.org").await;
    let before = api.events("EmailVerificationRequestedEventV1").await.len();
    for email in [
        "unverified@example.org",
        "unverified@example.org",
        "nobody@example.org",
        "new@example.org",
    ] {
        let answer = resend(email).await;
        assert_eq!(answer.status, StatusCode::ACCEPTED, "{email}");
    }
    let after = api.events("EmailVerificationRequestedEventV1").await.len();
    assert_eq!(
        after, before,
        "the registration just sent one (throttled), nobody has no account, new is verified"
    );
    let _ = id;
}

on_both_backends!(
    email_change,
    email_change_keeps_the_old_address_until_the_new_one_is_verified_on_sqlite,
    email_change_keeps_the_old_address_until_the_new_one_is_verified_on_postgres
);

// -------------------------------------------------------------------------------------------
// Attacks.
// -------------------------------------------------------------------------------------------

async fn attacks(backend: Backend) {
    let api = Api::start(backend, |_| {}).await;
    let (ann, _) = api.register("ann@example.org").await;
    let (bob, bob_location) = api.register("bob@example.org").await;
    let (ann_token, _) = api.login("ann@example.org", PASSWORD).await;
    let (bob_token, _) = api.login("bob@example.org", PASSWORD).await;

    // Forged, garbage, truncated, extended, flipped tokens; other schemes; the admin token.
    let mut flipped = ann_token.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let forged = "A".repeat(43);
    let truncated = &ann_token[..42];
    let extended = format!("{ann_token}A");
    let long = "x".repeat(10_000);
    let hash = hex::encode(Sha256::digest(ann_token.as_bytes()));
    for (what, header) in [
        ("no header", None),
        ("empty bearer", Some("Bearer ".to_owned())),
        ("basic scheme", Some(format!("Basic {ann_token}"))),
        ("no scheme", Some(ann_token.clone())),
        ("forged", Some(format!("Bearer {forged}"))),
        ("flipped", Some(format!("Bearer {flipped}"))),
        ("truncated", Some(format!("Bearer {truncated}"))),
        ("extended", Some(format!("Bearer {extended}"))),
        ("the stored hash", Some(format!("Bearer {hash}"))),
        ("padding", Some(format!("Bearer {ann_token}="))),
        ("sql", Some("Bearer ' OR '1'='1".to_owned())),
        ("long", Some(format!("Bearer {long}"))),
        ("admin token", Some(format!("Bearer {ADMIN_TOKEN}"))),
    ] {
        let mut request = api.client.get(api.service.url("/v1/sessions/current"));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_unauthenticated(
            &Answer {
                status,
                content_type,
                location: None,
                body,
            },
            what,
        );
    }
    for path in ["/v1/sessions", "/v1/users/me"] {
        assert_unauthenticated(&api.get(path, Some(&forged)).await, path);
    }
    assert_unauthenticated(
        &api.delete("/v1/sessions", Some(truncated), None).await,
        "revoke with a truncated token",
    );

    // Ann's token does not reach Bob; the answer is the same as for no such user.
    let answer = api.get(&bob_location, Some(&ann_token)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_eq!(kind(&answer), "not-found");
    let answer = api
        .get(
            "/v1/users/0123456789abcdef0123456789abcdef",
            Some(&ann_token),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert_unauthenticated(&api.get(&bob_location, None).await, "anonymous");
    let answer = api.get(&bob_location, Some(ADMIN_TOKEN)).await;
    assert_eq!(answer.status, StatusCode::OK, "an admin reads any user");
    assert_eq!(answer.body["id"], bob.as_str());
    // Ann's logout cannot end Bob's session; Ann's "revoke others" leaves Bob alone.
    api.delete("/v1/sessions", Some(&ann_token), None).await;
    assert_eq!(api.whoami(&bob_token).await.status, StatusCode::OK);

    // The admin ends every session of a user.
    let answer = api
        .delete(&format!("/admin/users/{ann}/sessions"), None, None)
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = api
        .delete(
            &format!("/admin/users/{ann}/sessions"),
            Some(&ann_token),
            None,
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::UNAUTHORIZED,
        "a session is not an admin"
    );
    let answer = api
        .delete(
            &format!("/admin/users/{ann}/sessions"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["revoked"], 1);
    assert_unauthenticated(&api.whoami(&ann_token).await, "revoked by an admin");
    assert_eq!(api.whoami(&bob_token).await.status, StatusCode::OK);

    // A verification token used by 8 concurrent requests verifies once.
    api.register("race@example.org").await;
    let token = api.verification_token("race@example.org").await;
    let answers = futures_util::future::join_all((0..8).map(|_| api.verify_email(&token))).await;
    let ok = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .count();
    let refused = answers
        .iter()
        .filter(|a| kind(a) == "invalid-verification-token")
        .count();
    assert_eq!(
        (ok, refused),
        (1, 7),
        "exactly one use of a single-use token"
    );
    assert_eq!(
        api.events("EmailVerifiedEventV1").await.len(),
        1,
        "one event for one verification"
    );

    // Eight concurrent logouts of one session: it ends once, nothing fails.
    let (token, _) = api.login("race@example.org", PASSWORD).await;
    let answers = futures_util::future::join_all(
        (0..8).map(|_| api.delete("/v1/sessions/current", Some(&token), None)),
    )
    .await;
    assert!(
        answers
            .iter()
            .all(|a| a.status == StatusCode::NO_CONTENT || a.status == StatusCode::UNAUTHORIZED)
    );
    assert!(answers.iter().any(|a| a.status == StatusCode::NO_CONTENT));
    assert_unauthenticated(&api.whoami(&token).await, "after concurrent logouts");

    // Two devices revoking each other at once: at most one survives, never both.
    let (one, _) = api.login("race@example.org", PASSWORD).await;
    let (two, _) = api.login("race@example.org", PASSWORD).await;
    let (_, _) = tokio::join!(
        api.delete("/v1/sessions", Some(&one), None),
        api.delete("/v1/sessions", Some(&two), None)
    );
    let alive = [api.whoami(&one).await.status, api.whoami(&two).await.status]
        .iter()
        .filter(|status| **status == StatusCode::OK)
        .count();
    assert!(alive <= 1, "both sessions survived mutual revocation");

    // Concurrent logins each get their own session and token.
    let logins =
        futures_util::future::join_all((0..6).map(|_| api.try_login("bob@example.org", PASSWORD)))
            .await;
    let tokens: std::collections::BTreeSet<String> = logins
        .iter()
        .filter_map(|a| a.body["session_token"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(tokens.len(), 6);
    let list = api.get("/v1/sessions", Some(&bob_token)).await;
    assert_eq!(list.body["sessions"].as_array().unwrap().len(), 7);
}

on_both_backends!(
    attacks,
    forged_foreign_reused_and_racing_tokens_are_refused_on_sqlite,
    forged_foreign_reused_and_racing_tokens_are_refused_on_postgres
);
