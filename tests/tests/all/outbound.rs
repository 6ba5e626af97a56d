//! The service's own outbound calls, end to end: events through the outbox to a consumer and a
//! file, the direct notification fallback, dead letters and replay, security policies from a
//! Configuration Service, discovery through DNS, and client-credentials tokens.

use harness::{
    captcha_vendors::{CaptchaServer, Vendor},
    dns::{TestDnsServer, TestRecord},
    hibp::HibpServer,
    http::{get_text, post},
    internal_services::{
        CLIENT_ID, CLIENT_SECRET, ConfigService, Health, LogCapture, ResourceServer, TokenEndpoint,
    },
    postgres,
    service::{ADMIN_TOKEN, TestService},
    wait_until,
};
use policy_host::egress::config::SecretSource;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{collections::BTreeMap, path::Path, time::Duration};
use user_service::{
    ServiceConfig,
    outbound::{discovery::ServiceLocation, token::ClientCredentialsConfig},
    outbox::sinks::SinkConfig,
    store::{OutboxEvent, Store, random_id},
};

const PASSWORD: &str = "correct horse battery staple";
const NEW_PASSWORD: &str = "tremendous violet harbour lantern";

async fn admin(client: &Client, method: reqwest::Method, url: String) -> (StatusCode, Value) {
    let response = client
        .request(method, url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn service_at(config: &mut ServiceConfig, name: &str, url: &str) {
    config.services.insert(
        name.to_owned(),
        ServiceLocation {
            url: Some(url.to_owned()),
            ..ServiceLocation::default()
        },
    );
}

fn event_sink(config: &mut ServiceConfig, file: Option<&Path>) {
    config.events.sinks = vec![SinkConfig::Http {
        name: None,
        service: "event-consumer".to_owned(),
        path: "/events".to_owned(),
        mode: user_service::outbox::sinks::HttpMode::Structured,
    }];
    if let Some(file) = file {
        config.events.sinks.push(SinkConfig::File {
            name: None,
            path: file.to_path_buf(),
        });
    }
}

fn email_sink(config: &mut ServiceConfig) {
    config.events.sinks = vec![SinkConfig::NotificationEmail {
        name: None,
        service: "notification-service".to_owned(),
        path: "/notifications/email".to_owned(),
    }];
}

fn service_auth(config: &mut ServiceConfig, tokens: &TokenEndpoint) {
    config.service_auth = Some(ClientCredentialsConfig {
        token_url: tokens.token_url(),
        client_id: CLIENT_ID.to_owned(),
        client_secret: Some(SecretSource::Value(CLIENT_SECRET.to_owned())),
        client_assertion: None,
        scope: Some("notifications:write config:read".to_owned()),
        audience: None,
        refresh_before_s: 60,
        allow_private: true,
    });
}

async fn register(client: &Client, service: &TestService, email: &str) -> Value {
    let (status, body) = post(
        client,
        service.url("/v1/users"),
        json!({ "email": email, "password": PASSWORD, "display_name": "Ana Silva" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

async fn request_reset(client: &Client, service: &TestService, email: &str) {
    let (status, body) = post(
        client,
        service.url("/v1/password/reset-requests"),
        json!({ "email": email }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn every_event_type_reaches_the_consumer_once_in_order_and_the_file() {
    let hibp = HibpServer::start(&[]).await;
    let consumer = ResourceServer::start("/events", None).await;
    let file = tempfile::tempdir().unwrap();
    let events_file = file.path().join("events.jsonl");
    let service = TestService::start(&hibp.server.url(), None, |config| {
        service_at(config, "event-consumer", &consumer.url());
        event_sink(config, Some(&events_file));
    })
    .await
    .unwrap();
    let client = Client::new();

    let user = register(&client, &service, "ana@example.org").await;
    let (status, _) = post(
        &client,
        service.url("/v1/password/change"),
        json!({ "email": "ana@example.org", "current_password": PASSWORD, "new_password": NEW_PASSWORD }),
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    request_reset(&client, &service, "ana@example.org").await;

    assert!(
        wait_until(Duration::from_secs(10), || async {
            consumer.accepted().len() >= 4
        })
        .await
        .is_some(),
        "events delivered: {:?}",
        consumer.accepted()
    );
    let accepted = consumer.accepted();
    let types: Vec<&str> = accepted
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "UserRegisteredEventV1",
            "EmailVerificationRequestedEventV1",
            "PasswordChangedEventV1",
            "PasswordResetRequestedEventV1"
        ],
        "one user's events arrive in the order they happened"
    );
    for event in &accepted {
        // Structured-mode CloudEvents 1.0.
        assert_eq!(event["specversion"], "1.0");
        assert_eq!(event["source"], "/user-service");
        assert_eq!(event["subject"], user["id"], "the subject is the user id");
        assert_eq!(event["datacontenttype"], "application/json");
        assert_eq!(
            event["_idempotencyKey"], event["id"],
            "Idempotency-Key is the event id"
        );
        assert_eq!(event["data"]["userId"], user["id"]);
        let time = event["time"].as_str().unwrap();
        assert!(
            time.len() == 20 && time.ends_with('Z') && time > "2024",
            "{time}"
        );
        assert!(event["data"]["request"]["clientIp"].is_string());
        let text = event.to_string();
        assert!(
            !text.contains(PASSWORD) && !text.contains(NEW_PASSWORD),
            "no password in {text}"
        );
    }
    let reset = &accepted[3]["data"];
    let token = reset["resetToken"].as_str().unwrap();
    assert!(reset["resetLink"].as_str().unwrap().ends_with(token));
    assert!(reset["expiresAt"].as_i64().is_some());

    // The reset event's token completes the reset, and that is the fifth event.
    let (status, _) = service.complete_reset(&client, token, PASSWORD).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_until(Duration::from_secs(10), || async {
        consumer.accepted().len() >= 5
    })
    .await;
    assert_eq!(consumer.accepted()[4]["data"]["reason"], "reset");

    // The file sink got the same events, one JSON line each.
    let lines: Vec<Value> = std::fs::read_to_string(&events_file)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let ids = |events: &[Value]| events.iter().map(|e| e["id"].clone()).collect::<Vec<_>>();
    assert_eq!(ids(&lines), ids(&consumer.accepted()));
    let (_, counts) = admin(&client, reqwest::Method::GET, service.url("/admin/outbox")).await;
    assert_eq!(
        counts,
        json!({ "pending": 0, "deadLetters": 0, "delivered": 5 })
    );
}

#[tokio::test]
async fn a_notification_service_that_is_down_gets_every_reset_after_it_recovers() {
    let hibp = HibpServer::start(&[]).await;
    let notifications = ResourceServer::start("/notifications/email", None).await;
    // First it hangs (every delivery runs into its timeout), then it answers 503.
    notifications.set_health(Health::Hanging);
    let service = TestService::start(&hibp.server.url(), None, |config| {
        service_at(config, "notification-service", &notifications.url());
        email_sink(config);
        config.flows.reset_link = "https://app.example.org/reset?token={token}".to_owned();
        config.events.max_attempts = 1000;
        config.events.delivery_timeout_ms = 300;
    })
    .await
    .unwrap();
    let client = Client::new();
    let users = ["a@example.org", "b@example.org", "c@example.org"];
    for user in users {
        register(&client, &service, user).await;
    }
    for user in users {
        let started = std::time::Instant::now();
        request_reset(&client, &service, user).await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a failing Notification Service never holds up the request"
        );
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    notifications.set_health(Health::Down);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(notifications.accepted().is_empty());
    assert!(
        notifications.server.request_count() > 3,
        "the relay kept retrying while the service was down"
    );
    notifications.set_health(Health::Up);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            notifications.accepted().len() >= 6
        })
        .await
        .is_some()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = notifications.accepted();
    assert_eq!(
        all.len(),
        6,
        "each verification and each reset notified exactly once: {all:?}"
    );
    let (emails, verifications): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|email| email["templateId"] == "password-reset");
    assert_eq!(emails.len(), 3, "{emails:?}");
    for email in &verifications {
        assert_eq!(email["templateId"], "email-verification");
        assert_eq!(email["context"]["userName"], "Ana Silva");
        let link = email["context"]["verificationLink"].as_str().unwrap();
        assert!(link.contains("/verify-email?token="), "{link}");
    }
    let mut recipients: Vec<&str> = emails.iter().map(|e| e["to"].as_str().unwrap()).collect();
    recipients.sort_unstable();
    assert_eq!(recipients, users);
    for email in &emails {
        assert_eq!(email["templateId"], "password-reset");
        assert_eq!(email["context"]["userName"], "Ana Silva");
        let link = email["context"]["resetLink"].as_str().unwrap();
        assert!(
            link.starts_with("https://app.example.org/reset?token="),
            "{link}"
        );
    }
    // The emailed link works.
    let link = emails[0]["context"]["resetLink"].as_str().unwrap();
    let token = link.rsplit_once('=').unwrap().1;
    let (status, body) = service.complete_reset(&client, token, NEW_PASSWORD).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

#[tokio::test]
async fn a_poison_event_goes_to_the_dead_letters_and_can_be_replayed() {
    let hibp = HibpServer::start(&[]).await;
    let consumer = ResourceServer::start("/events", None).await;
    consumer.reject_containing(Some("poison@example.org"));
    let service = TestService::start(&hibp.server.url(), None, |config| {
        service_at(config, "event-consumer", &consumer.url());
        event_sink(config, None);
        config.events.max_attempts = 3;
    })
    .await
    .unwrap();
    let client = Client::new();
    let poison = register(&client, &service, "poison@example.org").await;
    register(&client, &service, "fine@example.org").await;

    // Both of the poisoned user's events (registration, then its verification request, which
    // names the address too) run out of attempts, one after the other.
    assert!(
        wait_until(Duration::from_secs(10), || async {
            dead_letters(&client, &service).await.len() == 2
        })
        .await
        .is_some()
    );
    let letters = dead_letters(&client, &service).await;
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[1]["type"], "EmailVerificationRequestedEventV1");
    assert_eq!(letters[0]["type"], "UserRegisteredEventV1");
    assert_eq!(letters[0]["aggregateId"], poison["id"]);
    assert_eq!(letters[0]["attempts"], 3);
    assert!(
        letters[0]["lastError"].as_str().unwrap().contains("422"),
        "{letters:?}"
    );
    // ...and visible to an alert.
    let metrics = get_text(&client, service.url("/metrics")).await;
    assert!(metrics.contains("outbox_dead_letters 2"), "{metrics}");
    // The other user's events were not held up by them.
    assert_eq!(consumer.accepted().len(), 2);
    for event in consumer.accepted() {
        assert_eq!(event["data"]["email"], "fine@example.org");
    }

    // Fixed consumer, replay: delivered, dead letters empty.
    consumer.reject_containing(None);
    let id = letters[0]["id"].as_str().unwrap();
    let status = replay_dead_letter(&client, &service, id).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(
        wait_until(Duration::from_secs(10), || async {
            consumer.accepted().len() == 3
        })
        .await
        .is_some()
    );
    assert_eq!(consumer.accepted()[2]["id"], id);
    assert_eq!(
        dead_letters(&client, &service).await.len(),
        1,
        "the other one waits for its replay"
    );
    let status = replay_dead_letter(&client, &service, id).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing left to replay");
}

fn policy(min_length: u32, domains: &[&str]) -> Value {
    json!({
        "version": format!("min-{min_length}"),
        "password": { "minLength": min_length },
        "breach": { "maxBreaches": 0 },
        "tenants": { "acme": { "allowedEmailDomains": domains } },
    })
}

/// Registers `email` in the tenant `acme` (`POST /v1/users`).
async fn register_in_acme(
    client: &Client,
    service: &TestService,
    email: &str,
) -> (StatusCode, Value) {
    let body = json!({ "email": email, "password": PASSWORD, "tenant": "acme" });
    service.post(client, "/v1/users", body).await
}

/// Replays the dead letter `id` (`POST /admin/outbox/dead-letters/{id}/replay`).
async fn replay_dead_letter(client: &Client, service: &TestService, id: &str) -> StatusCode {
    admin(
        client,
        reqwest::Method::POST,
        service.url(&format!("/admin/outbox/dead-letters/{id}/replay")),
    )
    .await
    .0
}

async fn password_allowed(client: &Client, service: &TestService, password: &str) -> bool {
    let (status, body) = post(
        client,
        service.url("/v1/password/check"),
        json!({ "password": password }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["verdict"] == "allow"
}

async fn policy_status(client: &Client, service: &TestService) -> Value {
    admin(
        client,
        reqwest::Method::GET,
        service.url("/admin/security-policies"),
    )
    .await
    .1
}

fn config_service(config: &mut ServiceConfig, url: &str, cache_file: &Path) {
    service_at(config, "configuration-service", url);
    config.security_policies.service = Some("configuration-service".to_owned());
    config.security_policies.refresh_interval_ms = 200;
    config.security_policies.start_timeout_ms = 1000;
    config.security_policies.cache_file = cache_file.to_path_buf();
}

#[tokio::test]
async fn policies_apply_without_restart_survive_garbage_and_an_outage_at_start() {
    let breached = "a breached yet long passphrase";
    let hibp = HibpServer::start(&[(breached, 3)]).await;
    let upstream = ConfigService::start(&policy(16, &["acme.com"]), None).await;
    let cache = tempfile::tempdir().unwrap();
    let cache_file = cache.path().join("policies.json");
    let service = TestService::start(&hibp.server.url(), None, |config| {
        config_service(config, &upstream.url(), &cache_file);
    })
    .await
    .unwrap();
    let client = Client::new();
    let fourteen = "plum quiet orb";
    assert_eq!(fourteen.len(), 14);
    assert!(
        !password_allowed(&client, &service, fourteen).await,
        "min 16 in force from the start"
    );
    assert!(
        !password_allowed(&client, &service, breached).await,
        "maxBreaches 0: seen 3 times is breached"
    );
    assert_eq!(
        policy_status(&client, &service).await["source"],
        "configuration-service"
    );

    // Allowed email domains per tenant.
    let (status, body) = register_in_acme(&client, &service, "eve@evil.example").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["type"]
            .as_str()
            .unwrap()
            .ends_with(":email-domain-not-allowed"),
        "{body}"
    );
    let (status, _) = register_in_acme(&client, &service, "ann@acme.com").await;
    assert_eq!(status, StatusCode::CREATED);

    // A change upstream applies within a refresh interval, without a restart.
    let mut changed = policy(12, &["acme.com", "evil.example"]);
    changed["breach"]["maxBreaches"] = json!(5);
    upstream.serve(&changed);
    assert!(
        wait_until(Duration::from_secs(3), || async {
            password_allowed(&client, &service, fourteen).await
        })
        .await
        .is_some(),
        "min 12 applied"
    );
    let (status, _) = register_in_acme(&client, &service, "eve@evil.example").await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(
        password_allowed(&client, &service, breached).await,
        "maxBreaches 5 applied to the breach check"
    );

    // Garbage keeps the previous policy and is reported.
    upstream.serve_raw(200, b"<html>502 Bad Gateway</html>");
    assert!(
        wait_until(Duration::from_secs(3), || async {
            policy_status(&client, &service).await["lastError"].is_string()
        })
        .await
        .is_some()
    );
    let status = policy_status(&client, &service).await;
    assert_eq!(status["version"], "min-12", "{status}");
    assert!(
        status["lastError"]
            .as_str()
            .unwrap()
            .contains("not a security-policy document")
    );
    assert!(password_allowed(&client, &service, fourteen).await);
    upstream.serve(&json!({ "password": { "minLength": "sixteen" } }));
    assert!(
        wait_until(Duration::from_secs(3), || async {
            policy_status(&client, &service).await["lastError"]
                .as_str()
                .is_some_and(|error| error.contains("invalid type"))
        })
        .await
        .is_some(),
        "the wrong type is reported"
    );
    assert_eq!(policy_status(&client, &service).await["version"], "min-12");
    assert!(
        password_allowed(&client, &service, fourteen).await,
        "wrong types are garbage too"
    );
    drop(service);

    // Configuration Service down at start: the last known good copy (min 12) is used.
    let down = harness::upstream::closed_port().await;
    let restarted = TestService::start(&hibp.server.url(), None, |config| {
        config_service(config, &format!("http://127.0.0.1:{down}"), &cache_file);
    })
    .await
    .unwrap();
    let status = policy_status(&client, &restarted).await;
    assert_eq!(status["source"], "last-known-good", "{status}");
    assert_eq!(status["version"], "min-12");
    assert!(password_allowed(&client, &restarted, fourteen).await);
    assert!(!password_allowed(&client, &restarted, "plum quiet").await);

    // ...and with no copy either, the file configuration.
    let empty = cache.path().join("none.json");
    let bare = TestService::start(&hibp.server.url(), None, |config| {
        config_service(config, &format!("http://127.0.0.1:{down}"), &empty);
    })
    .await
    .unwrap();
    assert_eq!(
        policy_status(&client, &bare).await["source"],
        "file-configuration"
    );
}

#[tokio::test]
async fn one_token_serves_many_calls_is_refreshed_and_never_leaves_for_hibp_or_captcha() {
    let hibp = HibpServer::start(&[]).await;
    let turnstile = CaptchaServer::start(Vendor::Turnstile).await;
    // Lifetime 12 s: refreshed at half of it (the 60 s margin is longer than the lifetime),
    // so the first batch below has 6 s to use the first token, however slow the machine.
    let tokens = TokenEndpoint::start(12).await;
    let notifications =
        ResourceServer::start("/notifications/email", Some(tokens.book.clone())).await;
    let upstream = ConfigService::start(&policy(8, &[]), Some(tokens.book.clone())).await;
    let cache = tempfile::tempdir().unwrap();
    let service = TestService::start(
        &hibp.server.url(),
        Some(&turnstile.server.url()),
        |config| {
            service_at(config, "notification-service", &notifications.url());
            email_sink(config);
            service_auth(config, &tokens);
            config_service(config, &upstream.url(), &cache.path().join("p.json"));
            config.security_policies.refresh_interval_ms = 60_000;
            config.flows.captcha_on_register = true;
        },
    )
    .await
    .unwrap();
    // The first token was fetched during start, for the config fetch.
    let first_token = tokens
        .first_issued_at()
        .expect("a token for the config fetch");
    let client = Client::new();
    assert_eq!(
        policy_status(&client, &service).await["source"],
        "configuration-service"
    );

    for n in 0..5 {
        let email = format!("user{n}@example.org");
        let (status, body) = post(
            &client,
            service.url("/v1/users"),
            json!({ "email": email, "password": PASSWORD, "captcha_token": format!("reg-{n}") }),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, _) = post(
            &client,
            service.url("/v1/password/reset-requests"),
            json!({ "email": email, "captcha_token": format!("reset-{n}") }),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    assert!(
        wait_until(Duration::from_secs(10), || async {
            notifications.accepted().len() == 10
        })
        .await
        .is_some()
    );
    assert_eq!(
        tokens.issued(),
        1,
        "one token for the config fetch and ten notifications (five verifications, five resets)"
    );

    // Past half its lifetime the token is refreshed before use.
    tokio::time::sleep(Duration::from_millis(6300).saturating_sub(first_token.elapsed())).await;
    request_reset_with_captcha(&client, &service, "user0@example.org", "again-0").await;
    wait_until(Duration::from_secs(5), || async {
        notifications.accepted().len() == 11
    })
    .await;
    assert_eq!(tokens.issued(), 2);

    // A revoked token: one 401, one refresh, one retry, delivered.
    tokens.revoke_all();
    request_reset_with_captcha(&client, &service, "user1@example.org", "again-1").await;
    assert!(
        wait_until(Duration::from_secs(5), || async {
            notifications.accepted().len() == 12
        })
        .await
        .is_some()
    );
    assert_eq!(tokens.issued(), 3);

    // The token never went to HIBP or the CAPTCHA provider.
    assert!(hibp.server.request_count() >= 1 && turnstile.server.request_count() >= 10);
    for request in hibp
        .server
        .requests()
        .iter()
        .chain(turnstile.server.requests().iter())
    {
        assert!(
            request.header("authorization").is_none(),
            "{}",
            request.everything()
        );
        for token in tokens.all_tokens() {
            assert!(!request.everything().contains(&token));
        }
    }
    // ...and every internal call carried one.
    for request in notifications
        .server
        .requests()
        .iter()
        .chain(upstream.server.requests().iter())
    {
        assert!(
            request
                .header("authorization")
                .is_some_and(|value| value.starts_with("Bearer access-token-"))
        );
    }
}

async fn request_reset_with_captcha(
    client: &Client,
    service: &TestService,
    email: &str,
    captcha: &str,
) {
    let (status, _) = post(
        client,
        service.url("/v1/password/reset-requests"),
        json!({ "email": email, "captcha_token": captcha }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn discovery_finds_the_notification_service_through_dns_srv() {
    let hibp = HibpServer::start(&[]).await;
    let notifications = ResourceServer::start("/notifications/email", None).await;
    let dns = TestDnsServer::start(vec![
        TestRecord::Srv {
            name: "_http._tcp.notification-service.service.consul".to_owned(),
            priority: 1,
            weight: 10,
            port: notifications.server.port(),
            target: "node-1.node.consul".to_owned(),
            ttl: 30,
        },
        TestRecord::A {
            name: "node-1.node.consul".to_owned(),
            ip: std::net::Ipv4Addr::LOCALHOST,
            ttl: 30,
        },
    ])
    .await;
    let service = TestService::start(&hibp.server.url(), None, |config| {
        config.services = BTreeMap::from([(
            "notification-service".to_owned(),
            ServiceLocation {
                srv: Some("_http._tcp.notification-service.service.consul".to_owned()),
                dns_servers: vec![dns.address()],
                ..ServiceLocation::default()
            },
        )]);
        email_sink(config);
    })
    .await
    .unwrap();
    let client = Client::new();
    register(&client, &service, "ana@example.org").await;
    request_reset(&client, &service, "ana@example.org").await;
    assert!(
        wait_until(Duration::from_secs(10), || async {
            // The verification and the reset.
            notifications.accepted().len() == 2
        })
        .await
        .is_some()
    );
    assert!(
        dns.queries().iter().any(
            |(name, kind)| kind == "SRV" && name.starts_with("_http._tcp.notification-service")
        )
    );
}

// ---------------------------------------------------------------------------------------------
// The relay under a misbehaving consumer (issue 19): nothing sensitive from an echoed request in
// a log line or a dead letter, no head-of-line blocking, short-circuits that are not failures.

/// Where a test's service keeps its data: SQLite in its temporary directory, or a fresh
/// PostgreSQL database.
#[derive(Clone, Copy, Debug)]
enum Storage {
    Sqlite,
    Postgres,
}

impl Storage {
    /// The database URL to configure, `None` for the harness's SQLite default.
    async fn url(self) -> Option<String> {
        match self {
            Self::Sqlite => None,
            Self::Postgres => Some(
                postgres::fresh_database()
                    .await
                    .expect("a PostgreSQL server (see tests/src/postgres.rs)"),
            ),
        }
    }
}

/// Writes an event for `user` straight into the outbox (as a state change would) and returns
/// its id.
async fn insert_event(store: &Store, event_type: &str, user: &str, data: Value) -> String {
    let id = random_id().unwrap();
    let event = OutboxEvent {
        id: id.clone(),
        event_type: event_type.to_owned(),
        aggregate_id: user.to_owned(),
        payload: json!({ "id": id, "type": event_type, "version": 1, "occurredAt": 1_800_000_000, "data": data }),
    };
    store
        .create_reset_token(&id, user, 0, &event)
        .await
        .unwrap();
    id
}

/// The sum of the samples of counter `name` whose labels contain `label`.
fn counter(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn dead_letters(client: &Client, service: &TestService) -> Vec<Value> {
    admin(
        client,
        reqwest::Method::GET,
        service.url("/admin/outbox/dead-letters"),
    )
    .await
    .1["deadLetters"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

async fn an_echoed_request_leaks_no_token(storage: Storage) {
    let logs = LogCapture::start();
    let database = storage.url().await;
    let hibp = HibpServer::start(&[]).await;
    let tokens = TokenEndpoint::start(3600).await;
    let notifications =
        ResourceServer::start("/notifications/email", Some(tokens.book.clone())).await;
    // A validation error quoting the request: reset link, token and bearer token.
    notifications.set_health(Health::Echoing(400));
    let service = TestService::start(&hibp.server.url(), None, |config| {
        if let Some(url) = &database {
            config.database_url = url.clone();
        }
        service_at(config, "notification-service", &notifications.url());
        email_sink(config);
        service_auth(config, &tokens);
        config.flows.reset_link = "https://app.example.org/reset?token={token}".to_owned();
        config.events.max_attempts = 3;
    })
    .await
    .unwrap();
    let client = Client::new();
    register(&client, &service, "four@example.org").await;
    register(&client, &service, "five@example.org").await;

    request_reset(&client, &service, "four@example.org").await;
    assert!(
        wait_until(Duration::from_secs(15), || async {
            dead_letters(&client, &service).await.len() == 3
        })
        .await
        .is_some(),
        "the 400 events (two verifications, one reset) became dead letters"
    );
    // Then a 5xx quoting the request (retried by the gateway, breaker and all).
    notifications.set_health(Health::Echoing(503));
    request_reset(&client, &service, "five@example.org").await;
    assert!(
        wait_until(Duration::from_secs(30), || async {
            dead_letters(&client, &service).await.len() == 4
        })
        .await
        .is_some(),
        "the 503 event became a dead letter"
    );

    // Every value that must not leak: both events' tokens and links, the access tokens, the
    // client secret and the Basic credentials built from it.
    let mut secrets = vec![CLIENT_SECRET.to_owned()];
    secrets.extend(tokens.all_tokens());
    for event in service.state.store.pending_events().await.unwrap() {
        let data = &event.payload["data"];
        for key in [
            "resetToken",
            "resetLink",
            "verificationToken",
            "verificationLink",
        ] {
            secrets.extend(data[key].as_str().map(str::to_owned));
        }
    }
    assert_eq!(secrets.len(), 1 + tokens.all_tokens().len() + 8);
    // The test would prove nothing if the echoes had not carried them.
    let echoed: String = notifications
        .server
        .requests()
        .iter()
        .map(harness::upstream::RecordedRequest::everything)
        .collect();
    for secret in &secrets[1..] {
        assert!(echoed.contains(secret.as_str()), "{secret} was sent");
    }

    let letters = dead_letters(&client, &service).await;
    let mut statuses: Vec<String> = letters
        .iter()
        .map(|letter| letter["lastError"].as_str().unwrap().to_owned())
        .collect();
    statuses.sort();
    assert!(
        statuses[..3]
            .iter()
            .all(|status| status.contains("answered 400"))
            && statuses[3].contains("answered 503"),
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|error| error.contains("-byte body, not recorded"))
    );
    let admin_text = serde_json::to_string(&letters).unwrap();
    let log_text = logs.text();
    assert!(
        !logs.lines_with(&["dead letters"]).is_empty(),
        "the dead-letter lines were captured: {log_text}"
    );
    // Whether a failure before the dead letter is logged as "will retry" or deferred by the
    // notification destination's breaker depends on timing; the dead-letter lines above prove
    // the capture saw the relay's failures.
    for secret in &secrets {
        let encoded: String = url_encode(secret);
        for text in [&admin_text, &log_text] {
            assert!(
                !text.contains(secret.as_str()) && !text.contains(&encoded),
                "{secret} leaked into {text}"
            );
        }
    }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn an_echoed_request_leaks_no_token_on_sqlite() {
    an_echoed_request_leaks_no_token(Storage::Sqlite).await;
}

#[tokio::test]
async fn an_echoed_request_leaks_no_token_on_postgres() {
    an_echoed_request_leaks_no_token(Storage::Postgres).await;
}

async fn a_hanging_delivery_holds_only_its_own_user(storage: Storage) {
    let database = storage.url().await;
    let hibp = HibpServer::start(&[]).await;
    let consumer = ResourceServer::start("/events", None).await;
    // Takes the slow user's events at once, answers 10 s later.
    consumer.hang_containing(Some(("slow-user", Duration::from_secs(10))));
    let service = TestService::start(&hibp.server.url(), None, |config| {
        if let Some(url) = &database {
            config.database_url = url.clone();
        }
        service_at(config, "event-consumer", &consumer.url());
        event_sink(config, None);
        // Long enough for the hang to end in a delivery, not a timeout.
        config.outbound.defaults.first_byte_timeout = Duration::from_secs(15);
        config.events.delivery_timeout_ms = 15_000;
    })
    .await
    .unwrap();
    let store = &service.state.store;
    let registered = |user: &str| json!({ "userId": user, "email": format!("{user}@example.org") });
    let first = insert_event(
        store,
        "UserRegisteredEventV1",
        "slow-user",
        registered("slow-user"),
    )
    .await;
    let second = insert_event(
        store,
        "PasswordChangedEventV1",
        "slow-user",
        registered("slow-user"),
    )
    .await;
    service.state.outbox_waker.notify_one();
    assert!(
        wait_until(Duration::from_secs(5), || async {
            consumer.requests_with_key(&first) == 1
        })
        .await
        .is_some(),
        "the slow user's first event went out"
    );
    let hang_started = std::time::Instant::now();

    let mut others = Vec::new();
    for n in 0..50 {
        let user = format!("user-{n}");
        others.push(insert_event(store, "UserRegisteredEventV1", &user, registered(&user)).await);
    }
    service.state.outbox_waker.notify_one();
    let committed = std::time::Instant::now();
    let delivered = |ids: &[String]| {
        let accepted = consumer.accepted();
        ids.iter()
            .all(|id| accepted.iter().any(|event| event["id"] == id.as_str()))
    };
    let waited = wait_until(Duration::from_secs(9), || async { delivered(&others) })
        .await
        .expect("the other users' events were delivered while one delivery hung");
    assert!(
        committed.elapsed() < Duration::from_secs(1),
        "50 other users' events took {waited:?} behind a hanging delivery"
    );
    assert!(hang_started.elapsed() < Duration::from_secs(10));
    // The slow user's next event waits for the first (order per user), which is not re-sent
    // while it is in flight.
    assert!(!delivered(std::slice::from_ref(&second)));
    assert_eq!(consumer.requests_with_key(&first), 1);

    assert!(
        wait_until(Duration::from_secs(15), || async {
            delivered(std::slice::from_ref(&second))
        })
        .await
        .is_some(),
        "the slow user's events went on after the hang"
    );
    assert!(hang_started.elapsed() >= Duration::from_secs(9));
    let accepted = consumer.accepted();
    let position = |id: &str| accepted.iter().position(|event| event["id"] == id);
    assert!(position(&first) < position(&second));
    assert_eq!(
        consumer.requests_with_key(&first),
        1,
        "the hanging delivery was not sent twice"
    );
    assert_eq!(consumer.requests_with_key(&second), 1);
    assert_eq!(accepted.len(), 52);
}

#[tokio::test]
async fn a_hanging_delivery_holds_only_its_own_user_on_sqlite() {
    a_hanging_delivery_holds_only_its_own_user(Storage::Sqlite).await;
}

#[tokio::test]
async fn a_hanging_delivery_holds_only_its_own_user_on_postgres() {
    a_hanging_delivery_holds_only_its_own_user(Storage::Postgres).await;
}

#[tokio::test]
async fn an_open_breaker_defers_deliveries_without_counting_them_as_failures() {
    const SINK: &str = "breaker-test-email";
    let logs = LogCapture::start();
    let hibp = HibpServer::start(&[]).await;
    let notifications = ResourceServer::start("/notifications/email", None).await;
    notifications.set_health(Health::Down);
    let service = TestService::start(&hibp.server.url(), None, |config| {
        service_at(config, "notification-service", &notifications.url());
        config.events.sinks = vec![SinkConfig::NotificationEmail {
            name: Some(SINK.to_owned()),
            service: "notification-service".to_owned(),
            path: "/notifications/email".to_owned(),
        }];
        config.events.max_attempts = 1000;
        config.outbound.defaults.breaker.open_for = Duration::from_secs(1);
    })
    .await
    .unwrap();
    let store = &service.state.store;
    let mut ids = Vec::new();
    for n in 0..40 {
        let user = format!("reset-{n}");
        ids.push(
            insert_event(
                store,
                "PasswordResetRequestedEventV1",
                &user,
                json!({
                    "userId": user,
                    "email": format!("{user}@example.org"),
                    "userName": null,
                    "resetToken": format!("token-of-{user}"),
                    "resetLink": format!("https://app.example.org/reset?token=token-of-{user}"),
                }),
            )
            .await,
        );
    }
    service.state.outbox_waker.notify_one();
    tokio::time::sleep(Duration::from_secs(4)).await;

    let client = Client::new();
    let text = get_text(&client, service.url("/metrics")).await;
    let sink_label = format!("sink=\"{SINK}\"");
    let failures = counter(&text, "outbox_delivery_failures_total", &sink_label);
    let deferred = counter(&text, "outbox_deliveries_deferred_total", &sink_label);
    let sent = notifications.server.request_count() as f64;
    assert!(failures >= 1.0, "{text}");
    assert!(
        failures <= sent,
        "{failures} failures counted for {sent} requests sent"
    );
    assert!(
        deferred > failures,
        "short-circuits are counted apart: {deferred} deferred, {failures} failed"
    );
    let warned = logs.lines_with(&["event delivery failed", SINK]).len() as f64;
    assert!(warned <= sent, "{warned} failure lines for {sent} requests");
    let opened = logs.lines_with(&["WARN", "deliveries to this sink are deferred", SINK]);
    assert!(
        !opened.is_empty() && (opened.len() as f64) < sent && opened.len() < 10,
        "the open breaker is logged once per state change, not per event: {opened:?}"
    );
    assert!(
        logs.lines_with(&["event delivery deferred"]).is_empty()
            || logs
                .lines_with(&["event delivery deferred"])
                .iter()
                .all(|line| line.contains("DEBUG")),
        "deferrals are not warnings"
    );

    // Recovery: every reset email exactly once, and the recovery is logged.
    notifications.set_health(Health::Up);
    assert!(
        wait_until(Duration::from_secs(15), || async {
            notifications.accepted().len() == ids.len()
        })
        .await
        .is_some(),
        "every email went out after the recovery: {}",
        notifications.accepted().len()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(notifications.accepted().len(), ids.len());
    assert!(!logs.lines_with(&["attempted again", SINK]).is_empty());
    for id in &ids {
        assert!(notifications.requests_with_key(id) >= 1);
    }
}
