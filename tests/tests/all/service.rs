//! End to end: the real User Service over HTTP, with the real plugins and local upstreams.

use harness::{
    captcha_vendors::{CaptchaServer, Vendor},
    hibp::{HibpServer, Mode},
    http::{get_json, get_text, post},
    service::{ADMIN_TOKEN, TestService},
    wait_until,
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const GOOD_PASSWORD: &str = "correct horse battery staple";

fn codes(problem: &Value) -> Vec<String> {
    problem["findings"]
        .as_array()
        .map(|findings| {
            findings
                .iter()
                .filter_map(|f| f["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A breach-corpus server holding `corpus`, a service with the default configuration checking
/// against it, and a client.
async fn default_service(corpus: &[(&str, u64)]) -> (HibpServer, TestService, Client) {
    let hibp = HibpServer::start(corpus).await;
    let service = TestService::start(&hibp.server.url(), None, |_| {})
        .await
        .unwrap();
    (hibp, service, Client::new())
}

async fn register(
    client: &Client,
    service: &TestService,
    email: &str,
    password: &str,
) -> (StatusCode, Value) {
    post(
        client,
        service.url("/v1/users"),
        json!({ "email": email, "password": password, "display_name": "Maria Gonzalez" }),
    )
    .await
}

/// `POST /v1/password/reset-requests` for `email`.
async fn request_reset(client: &Client, service: &TestService, email: &str) -> (StatusCode, Value) {
    let body = json!({ "email": email });
    service
        .post(client, "/v1/password/reset-requests", body)
        .await
}

/// `POST /v1/password/check`: the dry run for `password`.
async fn check_password(
    client: &Client,
    service: &TestService,
    password: &str,
) -> (StatusCode, Value) {
    let body = json!({ "password": password });
    service.post(client, "/v1/password/check", body).await
}

/// `method path` with the admin token; the JSON answer.
async fn admin_json(client: &Client, service: &TestService, method: Method, path: &str) -> Value {
    client
        .request(method, service.url(path))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn registration_validates_everything_and_stores_the_user() {
    let (_hibp, service, client) = default_service(&[("password123456789", 99)]).await;

    let (status, body) = register(&client, &service, "Maria@Example.org", GOOD_PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["email"], "maria@example.org");
    let (status, body) = register(&client, &service, "maria@example.org", GOOD_PASSWORD).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (
            StatusCode::CONFLICT,
            Some("urn:user-service:problem:email-taken")
        )
    );

    let (status, body) = register(&client, &service, "weak@example.org", "password").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(codes(&body), ["too-short", "common-password"]);
    assert!(
        body["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains("15"),
        "guidance comes with every code"
    );
    let (_, body) = register(&client, &service, "ctx@example.org", "MariaGonzalez2024!").await;
    assert_eq!(codes(&body), ["context-word"]);
    let (_, body) = register(
        &client,
        &service,
        "breached@example.org",
        "password123456789",
    )
    .await;
    assert!(codes(&body).contains(&"breached".to_owned()), "{body}");
    let (status, body) = register(&client, &service, "huge@example.org", &"x".repeat(5000)).await;
    assert_eq!(
        (status, codes(&body)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["too-long".to_owned()]
        )
    );

    let (status, body) = register(&client, &service, "not-an-email", GOOD_PASSWORD).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("urn:user-service:problem:invalid-email")
        )
    );
}

#[tokio::test]
async fn bad_requests_get_problem_documents_never_500s() {
    let (_hibp, service, client) = default_service(&[]).await;
    let send = |body: Vec<u8>, content_type: &'static str| {
        let request = client
            .post(service.url("/v1/users"))
            .header("content-type", content_type)
            .body(body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let content_type = response
                .headers()
                .get("content-type")
                .map(|value| value.to_str().unwrap().to_owned());
            (
                status,
                content_type,
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    for (body, content_type, status, kind) in [
        (
            b"{not json".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
        (
            br#"{"email": 5}"#.to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            br#"{"email":"a@b.c","password":"x","admin":true}"#.to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            b"email=a@b.c".to_vec(),
            "application/x-www-form-urlencoded",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
        ),
        (
            vec![b'{'; 100_000],
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
        ),
        // Invalid UTF-8 inside a JSON string.
        (
            b"{\"email\":\"a@b.c\",\"password\":\"\xff\xfe\"}".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed-json",
        ),
    ] {
        let (got, content_type_back, problem) = send(body, content_type).await;
        assert_eq!(got, status, "{problem}");
        assert_eq!(
            content_type_back.as_deref(),
            Some("application/problem+json")
        );
        assert_eq!(problem["type"], format!("urn:user-service:problem:{kind}"));
    }
    let response = client.get(service.url("/nowhere")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn login_flags_a_password_breached_since_registration() {
    let (hibp, service, client) = default_service(&[(GOOD_PASSWORD, 5)]).await;
    // At registration the range API is down: the check fails open (flagged), the user is created.
    hibp.set_mode(Mode::Status(503));
    let (status, body) = register(&client, &service, "late@example.org", GOOD_PASSWORD).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("breach check unavailable")
    );
    // Now the corpus answers: the password the user just proved is breached.
    hibp.set_mode(Mode::Healthy);
    let (status, body) = service
        .login(&client, "late@example.org", GOOD_PASSWORD)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["password_breached"], true);
    assert_eq!(body["reset_required"], true);
}

#[tokio::test]
async fn failures_bring_a_captcha_then_a_lock() {
    let hibp = HibpServer::start(&[]).await;
    let turnstile = CaptchaServer::start(Vendor::Turnstile).await;
    let service = TestService::start(&hibp.server.url(), Some(&turnstile.url()), |config| {
        config.flows.lock_after_failures = 6;
    })
    .await
    .unwrap();
    let client = Client::new();
    register(&client, &service, "ana@example.org", GOOD_PASSWORD).await;
    let login = |password: &str, token: Option<&str>| {
        post(
            &client,
            service.url("/v1/sessions"),
            json!({ "email": "ana@example.org", "password": password, "captcha_token": token }),
        )
    };

    for _ in 0..3 {
        let (status, body) = login("wrong password entirely", None).await;
        assert_eq!(
            (status, body["type"].as_str()),
            (
                StatusCode::UNAUTHORIZED,
                Some("urn:user-service:problem:invalid-credentials")
            )
        );
    }
    // Three failures: a CAPTCHA is now required, even with the right password.
    let (status, body) = login(GOOD_PASSWORD, None).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (
            StatusCode::UNAUTHORIZED,
            Some("urn:user-service:problem:captcha-required")
        )
    );
    assert_eq!(turnstile.server.request_count(), 0);
    let (status, body) = login(GOOD_PASSWORD, Some("widget-token-1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        turnstile.server.request_count(),
        1,
        "the token was verified with the provider"
    );

    // Six consecutive failures lock the account until a reset.
    for i in 0..6 {
        login("wrong password entirely", Some(&format!("t-{i}"))).await;
    }
    let (status, body) = login(GOOD_PASSWORD, Some("t-final")).await;
    assert_eq!(
        (status, body["type"].as_str()),
        (
            StatusCode::TOO_MANY_REQUESTS,
            Some("urn:user-service:problem:account-locked")
        )
    );
}

#[tokio::test]
async fn reset_is_enumeration_safe_single_use_and_checked() {
    let (_hibp, service, client) = default_service(&[]).await;
    register(&client, &service, "reset@example.org", GOOD_PASSWORD).await;

    let (known, _) = request_reset(&client, &service, "reset@example.org").await;
    let (unknown, _) = request_reset(&client, &service, "nobody@example.org").await;
    assert_eq!(
        (known, unknown),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED),
        "same answer either way"
    );

    let events = service.delivered_events().await;
    let requested: Vec<_> = events
        .iter()
        .filter(|event| event["type"] == "PasswordResetRequestedEventV1")
        .collect();
    assert_eq!(requested.len(), 1, "only the real account got a reset");
    let token = requested[0]["data"]["resetToken"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, body) = service.complete_reset(&client, &token, "short").await;
    assert_eq!(
        (status, codes(&body)),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec!["too-short".to_owned()]
        )
    );
    let new_password = "a brand new passphrase for spring";
    let (status, _) = service.complete_reset(&client, &token, new_password).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = post(
        &client,
        service.url("/v1/password/resets"),
        json!({ "token": token, "new_password": "yet another long passphrase" }),
    )
    .await;
    assert_eq!(
        (status, body["type"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("urn:user-service:problem:invalid-reset-token")
        )
    );

    let (old, _) = service
        .login(&client, "reset@example.org", GOOD_PASSWORD)
        .await;
    let (new, _) = service
        .login(&client, "reset@example.org", new_password)
        .await;
    assert_eq!((old, new), (StatusCode::UNAUTHORIZED, StatusCode::OK));

    // Change, with the current password.
    let (status, _) = post(&client, service.url("/v1/password/change"), json!({ "email": "reset@example.org", "current_password": new_password, "new_password": "the third passphrase of the year" })).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = post(&client, service.url("/v1/password/change"), json!({ "email": "reset@example.org", "current_password": "wrong", "new_password": "the fourth passphrase of the year" })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let kinds: Vec<String> = service
        .delivered_events()
        .await
        .into_iter()
        .map(|event| event["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "UserRegisteredEventV1",
            "EmailVerificationRequestedEventV1",
            "PasswordResetRequestedEventV1",
            "PasswordChangedEventV1",
            "PasswordChangedEventV1"
        ]
    );
}

#[tokio::test]
async fn the_dry_run_reports_findings_length_and_breach() {
    let (_hibp, service, client) = default_service(&[("hunter2hunter2hunter2", 42)]).await;
    let (status, body) = check_password(&client, &service, "hunter2hunter2hunter2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["verdict"], "deny");
    assert_eq!(body["length"], 21);
    assert_eq!(
        body["breach"],
        json!({ "outcome": "breached", "count": 42 })
    );
    let (_, body) = check_password(&client, &service, GOOD_PASSWORD).await;
    assert_eq!(body["verdict"], "allow");
    assert_eq!(body["breach"]["outcome"], "clean");
}

#[tokio::test]
async fn admin_reload_rollback_and_a_hot_swap_while_serving() {
    let (_hibp, service, client) = default_service(&[]).await;

    assert_eq!(
        client
            .get(service.url("/admin/plugins"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let list: Value = admin_json(&client, &service, Method::GET, "/admin/plugins").await;
    let version = |list: &Value| {
        list["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "password-policy")
            .unwrap()["version"]
            .clone()
    };
    assert_eq!(version(&list), password_policy::PLUGIN_VERSION);

    // The watcher picks a new file up while the API serves.
    service.publish_next_password_policy().unwrap();
    let swapped = wait_until(Duration::from_secs(10), || async {
        let list: Value = admin_json(&client, &service, Method::GET, "/admin/plugins").await;
        version(&list) == harness::components::NEXT_VERSION
    })
    .await;
    assert!(swapped.is_some(), "hot swap through the watcher");
    let (status, _) = check_password(&client, &service, GOOD_PASSWORD).await;
    assert_eq!(status, StatusCode::OK);

    let reload: Value = admin_json(
        &client,
        &service,
        Method::POST,
        "/admin/plugins/password-policy/reload",
    )
    .await;
    assert_eq!(reload["outcome"], "unchanged");
    let rollback: Value = admin_json(
        &client,
        &service,
        Method::POST,
        "/admin/plugins/password-policy/rollback",
    )
    .await;
    assert_eq!(rollback["version"], password_policy::PLUGIN_VERSION);
    let response = client
        .request(Method::POST, service.url("/admin/plugins/nope/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn probes_metrics_and_openapi() {
    let (_hibp, service, client) = default_service(&[]).await;
    assert_eq!(
        client
            .get(service.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let ready = get_json(&client, service.url("/readyz")).await;
    assert_eq!(ready, json!({ "database": true, "plugins": true }));
    check_password(&client, &service, GOOD_PASSWORD).await;
    let metrics = get_text(&client, service.url("/metrics")).await;
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    assert!(metrics.contains("egress_requests_total"), "{metrics}");
    let openapi = get_json(&client, service.url("/openapi.json")).await;
    assert_eq!(openapi["openapi"], "3.1.0");
    assert!(openapi["paths"]["/v1/users"]["post"].is_object());
}

/// The password policy and the breach check of one request run concurrently: the breach
/// check's request reaches Pwned Passwords while a slow password policy is still deciding,
/// and the policy finishes while that request is still held open. Run one after the other,
/// either order breaks one of the two observations (no timing assertions: a barrier).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_policy_and_the_breach_check_of_one_request_run_concurrently() {
    use harness::upstream::{Reply, TestServer};
    use std::sync::{
        Arc, OnceLock,
        atomic::{AtomicBool, Ordering},
    };
    const NAP_MS: &str = "200";
    let host: Arc<OnceLock<Arc<policy_host::PolicyHost>>> = Arc::default();
    let policy_decided_before_the_breach_request = Arc::new(AtomicBool::new(false));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let corpus = harness::hibp::corpus(&[]);
    let upstream = {
        let (host, decided, release) = (
            host.clone(),
            policy_decided_before_the_breach_request.clone(),
            release.clone(),
        );
        TestServer::start(move |request| {
            let decisions = host.get().map_or(0, |host| policy_decisions(host));
            decided.store(decisions > 0, Ordering::SeqCst);
            let prefix = request.path.rsplit('/').next().unwrap_or_default();
            Reply::Hold {
                release: release.clone(),
                at_most: Duration::from_secs(3),
                then: Box::new(Reply::ok(harness::hibp::range_body(&corpus, prefix, false))),
            }
        })
        .await
    };
    let service = TestService::start(&upstream.url(), None, |config| {
        config.plugins.slots.insert(
            "password-policy".to_owned(),
            harness::slot(
                policy_host::PluginKind::PasswordPolicy,
                &[("nap-ms", NAP_MS)],
            ),
        );
        // The held breach request must outlast the policy's nap without timing out.
        config.plugins.limits.deadline = Duration::from_secs(5);
        if let Some(breach) = config.plugins.slots.get_mut("breach-check") {
            for destination in &mut breach.egress {
                let mut policy = harness::quick_policy();
                policy.first_byte_timeout = Duration::from_secs(4);
                destination.policy = Some(policy);
            }
        }
    })
    .await
    .expect("service");
    service
        .plugins
        .publish(
            "password-policy",
            std::path::Path::new(harness::components::SLEEPING_POLICY),
        )
        .expect("publish");
    service
        .state
        .host
        .catalog()
        .reload("password-policy")
        .await
        .expect("the slow policy loads");
    let _ = host.set(service.state.host.clone());
    let before = policy_decisions(&service.state.host);
    assert_eq!(before, 0, "nothing decided yet");

    let url = service.url("/v1/password/check");
    let request = tokio::spawn(async move {
        post(&Client::new(), url, json!({ "password": GOOD_PASSWORD })).await
    });
    // The policy finishes (after its nap) while the breach request is still held...
    let decided = wait_until(Duration::from_secs(2), || async {
        policy_decisions(&service.state.host) > 0
    })
    .await;
    assert!(
        decided.is_some(),
        "the password policy never decided while the breach check's request was held: the checks ran one after the other"
    );
    assert_eq!(
        upstream.request_count(),
        1,
        "the breach request is in flight"
    );
    assert!(!request.is_finished());
    // ...which had reached the upstream before the policy was done.
    assert!(
        !policy_decided_before_the_breach_request.load(Ordering::SeqCst),
        "the breach check started only after the password policy had decided"
    );
    release.add_permits(1);
    let (status, body) = request.await.expect("request");
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["verdict"], "allow", "{body}");
    assert_eq!(body["breach"]["outcome"], "clean", "{body}");
}

/// Decisions the password-policy slot's serving version has made.
fn policy_decisions(host: &policy_host::PolicyHost) -> u64 {
    host.catalog()
        .slot("password-policy")
        .and_then(policy_host::catalog::Slot::current)
        .map_or(0, |plugin| plugin.decisions_served())
}
