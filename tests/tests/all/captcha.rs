//! The bundled captcha plugin against local `siteverify` servers that behave like reCAPTCHA,
//! hCaptcha and Turnstile (documented test keys included).

use harness::{
    PluginDir,
    captcha_vendors::{self as vendors, CaptchaServer, Mode, TokenDetails, Vendor},
    quick_policy, slot,
    upstream::{Reply, TestServer},
};
use policy_host::{
    CaptchaInput, DecisionRecord, FailPolicy, PluginKind, PolicyHost, Verdict,
    egress::config::{DestinationConfig, SecretSource},
};
use std::{path::Path, time::Duration};

/// A host with one captcha slot, `captcha`, for `provider` at `base_url`, whose host secret
/// `captcha-secret` holds `secret`.
async fn captcha_host(
    provider: &str,
    base_url: &str,
    path: &str,
    secret: &str,
    settings: &[(&str, &str)],
    tweak: impl FnOnce(&mut policy_host::PluginConfig),
) -> (PluginDir, PolicyHost) {
    let dir = PluginDir::new().unwrap();
    dir.publish("captcha", Path::new(bundled_plugins::CAPTCHA.path))
        .unwrap();
    let mut config = dir.config();
    config.egress.secrets.insert(
        "captcha-secret".to_owned(),
        SecretSource::Value(secret.to_owned()),
    );
    let mut all = vec![("provider", provider), ("base-url", base_url)];
    all.extend_from_slice(settings);
    let mut captcha = slot(PluginKind::Captcha, &all);
    captcha.egress = vec![DestinationConfig {
        url: format!("{base_url}{path}"),
        allow_private: true,
        secrets: vec!["captcha-secret".to_owned()],
        cache_ttl: None,
        idempotency_header: Some("idempotency-key".to_owned()),
        policy: Some(policy_host::egress::config::CallPolicy {
            max_retries: 1,
            ..quick_policy()
        }),
    }];
    tweak(&mut captcha);
    config.slots.insert("captcha".to_owned(), captcha);
    let host = PolicyHost::start(&config).await.unwrap();
    (dir, host)
}

async fn vendor_host(
    server: &CaptchaServer,
    provider: &str,
    secret: &str,
    settings: &[(&str, &str)],
) -> (PluginDir, PolicyHost) {
    captcha_host(
        provider,
        &server.url(),
        server.vendor.path(),
        secret,
        settings,
        |_| {},
    )
    .await
}

/// A host whose captcha slot verifies with Turnstile at `base_url`, with the simulators'
/// "real" secret; `tweak` adjusts the slot.
async fn turnstile_host(
    base_url: &str,
    tweak: impl FnOnce(&mut policy_host::PluginConfig),
) -> (PluginDir, PolicyHost) {
    captcha_host(
        "turnstile",
        base_url,
        Vendor::Turnstile.path(),
        vendors::REAL_SECRET,
        &[],
        tweak,
    )
    .await
}

async fn verify(host: &PolicyHost, token: &str, action: &str) -> DecisionRecord {
    let input = CaptchaInput {
        token: token.to_owned(),
        action: action.to_owned(),
        remote_ip: Some("203.0.113.7".to_owned()),
        idempotency_key: None,
    };
    host.verify_captcha("captcha", &input).await
}

fn details(action: Option<&str>, score: Option<f64>) -> TokenDetails {
    TokenDetails {
        hostname: "id.example.org".to_owned(),
        action: action.map(str::to_owned),
        score,
        challenge_ts: vendors::rfc3339_now(),
        cdata: None,
    }
}

#[tokio::test]
async fn turnstile_test_secrets_pass_fail_and_spend() {
    let server = CaptchaServer::start(Vendor::Turnstile).await;
    for (secret, verdict, codes) in [
        (vendors::TURNSTILE_PASS_SECRET, Verdict::Allow, vec![]),
        (
            vendors::TURNSTILE_FAIL_SECRET,
            Verdict::Deny,
            vec!["captcha-invalid"],
        ),
        (
            vendors::TURNSTILE_SPENT_SECRET,
            Verdict::Deny,
            vec!["captcha-expired-or-reused"],
        ),
    ] {
        let (_dir, host) = vendor_host(&server, "turnstile", secret, &[]).await;
        let record = verify(&host, "XXXX.DUMMY.TOKEN.XXXX", "login").await;
        assert_eq!(record.decision.verdict, verdict, "{secret}");
        assert_eq!(record.decision.codes(), codes, "{secret}");
    }
    // Every request carried the substituted secret and an idempotency key.
    for form in server.forms() {
        let secret = form
            .iter()
            .find(|(name, _)| name == "secret")
            .map(|(_, value)| value.as_str());
        assert!(
            secret.is_some_and(|secret| secret.ends_with("x0000000000000000000000000000000AA")),
            "{form:?}"
        );
        assert!(
            form.iter()
                .any(|(name, value)| name == "idempotency_key" && value.len() == 32)
        );
    }
}

#[tokio::test]
async fn hcaptcha_and_recaptcha_test_keys() {
    let hcaptcha = CaptchaServer::start(Vendor::Hcaptcha).await;
    let (_dir, host) = vendor_host(
        &hcaptcha,
        "hcaptcha",
        vendors::HCAPTCHA_TEST_SECRET,
        &[("check-action", "false")],
    )
    .await;
    assert_eq!(
        verify(&host, vendors::HCAPTCHA_TEST_TOKEN, "register")
            .await
            .decision
            .verdict,
        Verdict::Allow
    );
    assert_eq!(
        verify(&host, "some-other-token", "register")
            .await
            .decision
            .codes(),
        ["captcha-invalid"]
    );

    let recaptcha = CaptchaServer::start(Vendor::Recaptcha).await;
    let (_dir, host) =
        vendor_host(&recaptcha, "recaptcha", vendors::RECAPTCHA_TEST_SECRET, &[]).await;
    let record = verify(&host, "any-token-at-all", "login").await;
    assert_eq!(record.decision.verdict, Verdict::Allow);
    assert_eq!(
        record.decision.attribute("hostname"),
        Some(&policy_host::AttributeValue::Text(
            vendors::RECAPTCHA_TEST_HOSTNAME.to_owned()
        ))
    );
}

#[tokio::test]
async fn every_check_produces_its_finding() {
    let server = CaptchaServer::start(Vendor::Recaptcha).await;
    let settings = [
        ("expected-hostname", "id.example.org"),
        ("score-threshold.login", "0.5"),
        ("challenge-threshold.login", "0.3"),
    ];
    let (_dir, host) = vendor_host(&server, "recaptcha", vendors::REAL_SECRET, &settings).await;

    server.issue_token("good", details(Some("login"), Some(0.9)));
    assert_eq!(
        verify(&host, "good", "login").await.decision.verdict,
        Verdict::Allow
    );

    server.issue_token("low", details(Some("login"), Some(0.1)));
    assert_eq!(
        verify(&host, "low", "login").await.decision.codes(),
        ["captcha-score-low"]
    );

    server.issue_token("borderline", details(Some("login"), Some(0.4)));
    let record = verify(&host, "borderline", "login").await;
    assert_eq!(
        record.decision.verdict,
        Verdict::Challenge,
        "between the thresholds: step up"
    );
    assert_eq!(record.decision.codes(), ["captcha-score-low"]);

    server.issue_token("other-action", details(Some("register"), Some(0.9)));
    assert_eq!(
        verify(&host, "other-action", "login")
            .await
            .decision
            .codes(),
        ["captcha-action-mismatch"]
    );

    let mut elsewhere = details(Some("login"), Some(0.9));
    elsewhere.hostname = "phishing.example".to_owned();
    server.issue_token("elsewhere", elsewhere);
    assert_eq!(
        verify(&host, "elsewhere", "login").await.decision.codes(),
        ["captcha-hostname-mismatch"]
    );

    let mut stale = details(Some("login"), Some(0.9));
    stale.challenge_ts = "2020-01-01T00:00:00Z".to_owned();
    server.issue_token("stale", stale);
    assert_eq!(
        verify(&host, "stale", "login").await.decision.codes(),
        ["captcha-expired-or-reused"]
    );

    assert_eq!(
        verify(&host, "never-issued", "login")
            .await
            .decision
            .codes(),
        ["captcha-invalid"]
    );
    let before = server.server.request_count();
    assert_eq!(
        verify(&host, "  ", "login").await.decision.codes(),
        ["captcha-missing"]
    );
    assert_eq!(
        server.server.request_count(),
        before,
        "an empty token is refused without a provider call"
    );

    let (_dir, wrong) = vendor_host(&server, "recaptcha", "not-the-secret", &[]).await;
    assert_eq!(
        verify(&wrong, "good", "login").await.decision.codes(),
        ["captcha-misconfigured"]
    );
}

#[tokio::test]
async fn the_secret_reaches_the_provider_and_never_the_decision() {
    let server = CaptchaServer::start(Vendor::Hcaptcha).await;
    let (_dir, host) = vendor_host(
        &server,
        "hcaptcha",
        vendors::REAL_SECRET,
        &[("sitekey", "site-123")],
    )
    .await;
    server.issue_token("token-1", details(Some("register"), None));
    let record = verify(&host, "token-1", "register").await;
    assert_eq!(record.decision.verdict, Verdict::Allow);
    let form = &server.forms()[0];
    let field = |name: &str| {
        form.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    assert_eq!(
        field("secret").as_deref(),
        Some(vendors::REAL_SECRET),
        "the provider got the substituted secret"
    );
    assert_eq!(field("sitekey").as_deref(), Some("site-123"));
    assert_eq!(field("remoteip").as_deref(), Some("203.0.113.7"));
    assert!(!format!("{record:?}").contains(vendors::REAL_SECRET));
}

#[tokio::test]
async fn a_replayed_token_is_refused_without_a_provider_call() {
    let server = CaptchaServer::start(Vendor::Turnstile).await;
    let (_dir, host) = vendor_host(&server, "turnstile", vendors::REAL_SECRET, &[]).await;
    server.issue_token("once", details(Some("register"), None));
    assert_eq!(
        verify(&host, "once", "register").await.decision.verdict,
        Verdict::Allow
    );
    assert_eq!(server.server.request_count(), 1);
    let replay = verify(&host, "once", "register").await;
    assert_eq!(replay.decision.codes(), ["captcha-expired-or-reused"]);
    assert_eq!(
        server.server.request_count(),
        1,
        "the replay never reached the provider"
    );
}

#[tokio::test]
async fn provider_faults_fail_closed_unless_the_flow_says_open() {
    let server = CaptchaServer::start(Vendor::Turnstile).await;
    let (_dir, host) = turnstile_host(&server.url(), |slot| {
        slot.fail_policy_by_flow
            .insert("password_reset".to_owned(), FailPolicy::Open);
    })
    .await;
    for mode in [
        Mode::Status(500),
        Mode::Garbage,
        Mode::Slow(Duration::from_secs(3)),
    ] {
        server.set_mode(mode.clone());
        server.issue_token("t", details(None, None));
        let record = verify(&host, "t", "login").await;
        assert_eq!(
            record.decision.verdict,
            Verdict::Deny,
            "{mode:?}: closed by default"
        );
        assert_eq!(record.decision.codes(), ["captcha-unavailable"], "{mode:?}");
        assert!(record.fail_policy_applied.is_some());
        let record = verify(&host, "t", "password_reset").await;
        assert_eq!(
            record.decision.verdict,
            Verdict::Allow,
            "{mode:?}: open for this flow"
        );
        assert_eq!(record.decision.codes(), ["captcha-unavailable"], "flagged");
    }
    // A provider that is not there at all.
    let port = harness::upstream::closed_port().await;
    let (_dir, host) = turnstile_host(&format!("http://127.0.0.1:{port}"), |_| {}).await;
    assert_eq!(
        verify(&host, "t", "login").await.decision.codes(),
        ["captcha-unavailable"]
    );
}

#[tokio::test]
async fn a_retried_turnstile_call_carries_the_same_idempotency_key() {
    // A provider that fails the first attempt with 503, then answers.
    let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = attempts.clone();
    let server = TestServer::start(move |_| {
        if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            Reply::status(503)
        } else {
            Reply::Respond {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: format!(r#"{{"success":true,"error-codes":[],"hostname":"id.example.org","challenge_ts":"{}","action":"login"}}"#, vendors::rfc3339_now()).into_bytes(),
            }
        }
    })
    .await;
    let (_dir, host) = turnstile_host(&server.url(), |_| {}).await;
    let input = CaptchaInput {
        token: "retry-me".to_owned(),
        action: "login".to_owned(),
        remote_ip: None,
        idempotency_key: Some("attempt-42".to_owned()),
    };
    let record = host.verify_captcha("captcha", &input).await;
    assert_eq!(record.decision.verdict, Verdict::Allow);
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "the 503 was retried once");
    for request in &requests {
        let form = vendors::decode_form(&request.body);
        assert!(
            form.contains(&("idempotency_key".to_owned(), "attempt-42".to_owned())),
            "{form:?}"
        );
        assert_eq!(request.header("idempotency-key"), Some("attempt-42"));
    }
}

#[tokio::test]
async fn thresholds_set_at_run_time_apply_without_a_reload() {
    let server = CaptchaServer::start(Vendor::Recaptcha).await;
    let settings = [
        ("expected-hostname", "id.example.org"),
        ("score-threshold.login", "0.5"),
    ];
    let (_dir, host) = vendor_host(&server, "recaptcha", vendors::REAL_SECRET, &settings).await;
    let serving = || host.catalog().slot("captcha").unwrap().current().unwrap();
    let loaded = serving();

    server.issue_token("before", details(Some("login"), Some(0.7)));
    assert_eq!(
        verify(&host, "before", "login").await.decision.verdict,
        Verdict::Allow
    );

    // What the Configuration Service's `captcha.scoreThresholds.login` becomes.
    host.catalog()
        .set_setting_overrides(
            "captcha",
            [("score-threshold.login".to_owned(), "0.8".to_owned())].into(),
        )
        .unwrap();
    server.issue_token("stricter", details(Some("login"), Some(0.7)));
    assert_eq!(
        verify(&host, "stricter", "login").await.decision.codes(),
        ["captcha-score-low"]
    );
    assert!(
        std::sync::Arc::ptr_eq(&loaded, &serving()),
        "the same loaded version serves: no reload"
    );

    // Cleared: the configured settings are back.
    host.catalog()
        .set_setting_overrides("captcha", Default::default())
        .unwrap();
    server.issue_token("after", details(Some("login"), Some(0.7)));
    assert_eq!(
        verify(&host, "after", "login").await.decision.verdict,
        Verdict::Allow
    );
    assert!(
        host.catalog()
            .set_setting_overrides("no-such-slot", Default::default())
            .is_err()
    );
}

/// The status of `POST path` with `body` on `service`, and the problem type when refused.
async fn answer(
    service: &harness::service::TestService,
    path: &str,
    body: serde_json::Value,
) -> (u16, String) {
    let (status, body) =
        harness::http::post(&reqwest::Client::new(), service.url(path), body).await;
    let kind = body["type"].as_str().unwrap_or("").to_owned();
    (status.as_u16(), kind)
}

/// `captcha-on-register` governs registration and `captcha-on-reset-request` reset requests,
/// each alone; with only the old key set, reset requests still need one (its former meaning).
#[tokio::test]
async fn each_flow_asks_for_a_captcha_only_when_its_own_setting_says_so() {
    let hibp = harness::hibp::HibpServer::start(&[]).await;
    let turnstile = CaptchaServer::start(Vendor::Turnstile).await;
    let required = "urn:user-service:problem:captcha-required".to_owned();
    let register = |email: &str, token: Option<&str>| {
        serde_json::json!({
            "email": email,
            "password": "correct horse battery staple",
            "captcha_token": token,
        })
    };
    let reset = |token: Option<&str>| serde_json::json!({ "email": "ana@example.org", "captcha_token": token });
    // (on register, on reset request) → (register without a token, reset without a token)
    let cases = [
        ((true, Some(false)), (401, 202)),
        ((false, Some(true)), (201, 401)),
        ((true, None), (401, 401)),
        ((false, None), (201, 202)),
    ];
    for ((on_register, on_reset), (registered, reset_answered)) in cases {
        let service = harness::service::TestService::start(
            &hibp.server.url(),
            Some(&turnstile.url()),
            |config| {
                config.flows.captcha_on_register = on_register;
                config.flows.captcha_on_reset_request = on_reset;
            },
        )
        .await
        .unwrap();
        let case = format!("captcha-on-register = {on_register}, on-reset-request = {on_reset:?}");
        let (status, kind) = answer(&service, "/v1/users", register("ana@example.org", None)).await;
        assert_eq!(status, registered, "{case}: register without a token");
        if status == 401 {
            assert_eq!(kind, required, "{case}");
            let (status, _) = answer(
                &service,
                "/v1/users",
                register("ana@example.org", Some("t-1")),
            )
            .await;
            assert_eq!(status, 201, "{case}: register with a token");
        }
        let (status, kind) = answer(&service, "/v1/password/reset-requests", reset(None)).await;
        assert_eq!(
            status, reset_answered,
            "{case}: reset request without a token"
        );
        if status == 401 {
            assert_eq!(kind, required, "{case}");
            let (status, _) =
                answer(&service, "/v1/password/reset-requests", reset(Some("t-2"))).await;
            assert_eq!(status, 202, "{case}: reset request with a token");
        }
    }
}
