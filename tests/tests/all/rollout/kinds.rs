//! Staging breach-check and CAPTCHA candidates, and the decision log of every slot: the real
//! service (SQLite, one replica) with the bundled plugins against the local range server and
//! siteverify vendor.
//!
//! - a breach-check shadow over fresh ranges: the range server gets exactly one request per
//!   range, as without the shadow (the candidate is answered by the gateway's cache), and the
//!   diff counts the candidate's looser answers exactly;
//! - a breach-check canary and a CAPTCHA canary answer for exactly the accounts in their
//!   bucket; each single-use CAPTCHA token is verified once; a CAPTCHA shadow is refused;
//! - the decision log has one line per decision with its egress calls (destination without
//!   the range prefix, status, cached) and never the password, the email or the token.

use harness::{
    breach_check_component,
    captcha_vendors::{CaptchaServer, REAL_SECRET, TokenDetails, Vendor, rfc3339_now},
    hibp::HibpServer,
    replicas::desired_body,
    service::{ADMIN_TOKEN, TestService},
};
use policy_host::{
    egress::config::SecretSource,
    rollout::{StageKind, bucket::in_canary},
};
use reqwest::Client;
use serde_json::{Value, json};
use std::{collections::BTreeSet, path::Path, time::Duration};

/// Breached `count` times in the range server's corpus.
const BREACHED_COUNT: u64 = 42;

/// `PUT /admin/plugins/{slot}/desired`: the status and the body.
async fn put_desired(
    client: &Client,
    service: &TestService,
    slot: &str,
    body: &Value,
) -> (u16, Value) {
    let response = client
        .put(service.url(&format!("/admin/plugins/{slot}/desired")))
        .bearer_auth(ADMIN_TOKEN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Waits until `slot` has a candidate staged as `stage` on the service.
async fn wait_staged(service: &TestService, slot: &str, stage: StageKind) {
    let staging = || {
        service
            .state
            .host
            .catalog()
            .staging()
            .get(slot)
            .is_some_and(|staged| staged.plan.stage == stage)
    };
    let staged = harness::wait_until(Duration::from_secs(5), || async { staging() }).await;
    assert!(staged.is_some(), "{slot}: the {stage:?} was not staged");
}

/// The decision log's lines.
fn log_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
        .collect()
}

/// A password nobody else in these tests uses: `tag` and `n`, spaced past the policy's rules.
fn password(tag: &str, n: usize) -> String {
    format!("{tag} unusual phrase {n} of kinds")
}

/// The range prefixes of `passwords`.
fn prefixes<'a>(passwords: impl IntoIterator<Item = &'a String>) -> BTreeSet<String> {
    passwords
        .into_iter()
        .map(|password| breach_check::hash::prefix_and_suffix(password).0)
        .collect()
}

/// `POST /v1/password/check` as `email`: the answer's body.
async fn check(client: &Client, service: &TestService, email: &str, password: &str) -> Value {
    let response = client
        .post(service.url("/v1/password/check"))
        .json(&json!({ "password": password, "email": email }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn breach_findings(answer: &Value) -> bool {
    answer["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|finding| finding["code"] == "breached")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_breach_check_shadow_asks_the_range_api_no_more_than_the_serving_version_alone() {
    let _exclusive = harness::exclusive().await;
    let breached: Vec<String> = (0..10).map(|n| password("breached", n)).collect();
    let corpus: Vec<(&str, u64)> = breached
        .iter()
        .map(|password| (password.as_str(), BREACHED_COUNT))
        .collect();
    let hibp = HibpServer::start(&corpus).await;
    let log = tempfile::tempdir().unwrap();
    let log_path = log.path().join("decisions.jsonl");
    let service = TestService::start(&hibp.server.url(), None, |config| {
        config.rollout.decision_log = log_path.display().to_string();
        config.rollout.poll_interval_ms = 50;
    })
    .await
    .unwrap();
    let client = Client::new();

    // Without a stage: one range request per fresh prefix.
    let before: Vec<String> = (0..20).map(|n| password("before", n)).collect();
    let baseline = hibp.server.request_count();
    for (n, password) in before.iter().enumerate() {
        check(
            &client,
            &service,
            &format!("before-{n}@example.org"),
            password,
        )
        .await;
    }
    let without_shadow = hibp.server.request_count() - baseline;
    assert_eq!(without_shadow, prefixes(&before).len());

    // The candidate allows anything seen fewer than 1,000 times: looser on the breached ones.
    let (status, answer) = put_desired(
        &client,
        &service,
        "breach-check",
        &desired_body(
            breach_check_component(),
            "shadow",
            json!({ "settings": { "max-breaches": "1000" }, "sample-percent": 100, "max-concurrent": 64 }),
        ),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    wait_staged(&service, "breach-check", StageKind::Shadow).await;

    // Fresh passwords (fresh prefixes), the breached ones among them.
    let after: Vec<String> = (0..30)
        .map(|n| password("after", n))
        .chain(breached.iter().cloned())
        .collect();
    let fresh = prefixes(&after).difference(&prefixes(&before)).count();
    let baseline = hibp.server.request_count();
    let mut denied = 0;
    for (n, password) in after.iter().enumerate() {
        let answer = check(
            &client,
            &service,
            &format!("after-{n}@example.org"),
            password,
        )
        .await;
        denied += usize::from(breach_findings(&answer));
    }
    assert_eq!(denied, breached.len(), "the serving version answers");
    let staged = service
        .state
        .host
        .catalog()
        .staging()
        .get("breach-check")
        .unwrap();
    let compared = harness::wait_until(Duration::from_secs(10), || async {
        let report = staged.diff.report();
        report.unchanged + report.stricter + report.looser + report.reclassified
            == after.len() as u64
    })
    .await;
    let report = staged.diff.report();
    assert!(compared.is_some(), "the shadow did not compare: {report:?}");
    assert_eq!(
        hibp.server.request_count() - baseline,
        fresh,
        "the shadow asked the range API again"
    );
    assert_eq!(report.looser, breached.len() as u64, "{report:?}");
    assert_eq!(report.stricter, 0);
    assert_eq!(report.candidate.errors, 0);
    assert_eq!(report.shadow_skipped, 0);

    // The log: every breach decision with its one range call, the shadow's from the cache.
    let lines = log_lines(&log_path);
    let breach: Vec<&Value> = lines
        .iter()
        .filter(|line| line["slot"] == "breach-check")
        .collect();
    let of_role = |role: &str| breach.iter().filter(|line| line["role"] == role).count();
    assert_eq!(of_role("serving"), before.len() + after.len());
    assert_eq!(of_role("shadow"), after.len());
    let destination = format!("{}/range/", hibp.server.url());
    for line in &breach {
        let calls = line["egress"].as_array().unwrap();
        assert_eq!(calls.len(), 1, "{line}");
        let call = &calls[0];
        assert_eq!(call["destination"], destination.as_str(), "{line}");
        assert_eq!(call["method"], "GET");
        assert_eq!(call["status"], 200);
        assert!(call["latency_us"].is_u64());
        if line["role"] == "shadow" {
            assert_eq!(call["cached"], true, "{line}");
        }
        assert!(line["outcome"]["outcome"].is_string(), "{line}");
    }
    let served_fresh = breach
        .iter()
        .filter(|line| line["role"] == "serving" && line["egress"][0]["cached"] == false)
        .count();
    assert_eq!(served_fresh, hibp.server.request_count());
    assert_eq!(
        lines
            .iter()
            .filter(|line| line["slot"] == "password-policy")
            .count(),
        before.len() + after.len()
    );
    // Never an input: no password, no email, no range prefix.
    let text = std::fs::read_to_string(&log_path).unwrap();
    for (password, prefix) in before
        .iter()
        .chain(&after)
        .map(|password| (password, breach_check::hash::prefix_and_suffix(password).0))
    {
        assert!(
            !text.contains(password.as_str()),
            "a password is in the log"
        );
        assert!(!text.contains(&prefix), "a range prefix is in the log");
    }
    assert!(!text.contains("@example.org"), "an email is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_breach_check_canary_answers_for_exactly_its_bucket() {
    let _exclusive = harness::exclusive().await;
    let breached = password("canary breached", 0);
    let hibp = HibpServer::start(&[(breached.as_str(), BREACHED_COUNT)]).await;
    let service = TestService::start(&hibp.server.url(), None, |config| {
        config.rollout.poll_interval_ms = 50;
    })
    .await
    .unwrap();
    let client = Client::new();
    let salt = "breach-canary-salt";
    let (status, answer) = put_desired(
        &client,
        &service,
        "breach-check",
        &desired_body(
            breach_check_component(),
            "canary",
            json!({ "percent": 30, "salt": salt, "settings": { "max-breaches": "1000" } }),
        ),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    wait_staged(&service, "breach-check", StageKind::Canary).await;
    let mut in_share = 0;
    for n in 0..120 {
        let email = format!("Canary.{n}@Example.org");
        let expected = in_canary("breach-check", salt, &email, 30.0);
        // Twice, spelt two ways: the same version answers.
        for spelling in [email.clone(), email.to_lowercase()] {
            let answer = check(&client, &service, &spelling, &breached).await;
            assert_eq!(!breach_findings(&answer), expected, "{spelling}: {answer}");
        }
        in_share += usize::from(expected);
    }
    assert!(
        (18..=54).contains(&in_share),
        "{in_share} of 120 in a 30 % canary"
    );
    let report = service
        .state
        .host
        .catalog()
        .staging()
        .get("breach-check")
        .unwrap()
        .diff
        .report();
    assert_eq!(report.candidate.decisions, 2 * in_share as u64);
    assert_eq!(report.serving.decisions, 2 * (120 - in_share) as u64);
    // One range, asked once whichever version asked.
    assert_eq!(hibp.server.request_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_captcha_canary_verifies_each_token_once_and_a_captcha_shadow_is_refused() {
    let _exclusive = harness::exclusive().await;
    let hibp = HibpServer::start(&[]).await;
    let turnstile = CaptchaServer::start(Vendor::Turnstile).await;
    let log = tempfile::tempdir().unwrap();
    let log_path = log.path().join("decisions.jsonl");
    let service = TestService::start(&hibp.server.url(), Some(&turnstile.url()), |config| {
        config.flows.captcha_on_register = true;
        config.rollout.decision_log = log_path.display().to_string();
        config.rollout.poll_interval_ms = 50;
        // Single-use tokens: a second verification of one would fail.
        config.plugins.egress.secrets.insert(
            "captcha-secret".to_owned(),
            SecretSource::Value(REAL_SECRET.to_owned()),
        );
    })
    .await
    .unwrap();
    let client = Client::new();
    let candidate = |stage: &str, fields: Value| {
        let mut fields = fields;
        fields["settings"] = json!({ "expected-hostname": "elsewhere.example" });
        desired_body(Path::new(bundled_plugins::CAPTCHA.path), stage, fields)
    };
    let (status, answer) = put_desired(
        &client,
        &service,
        "captcha",
        &candidate("shadow", json!({ "sample-percent": 100 })),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["type"], "urn:user-service:problem:stage-unsupported",
        "{answer}"
    );

    let salt = "captcha-canary-salt";
    let (status, answer) = put_desired(
        &client,
        &service,
        "captcha",
        &candidate("canary", json!({ "percent": 30, "salt": salt })),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    wait_staged(&service, "captcha", StageKind::Canary).await;
    let registrations = 60;
    let mut tokens = Vec::new();
    let mut in_share = 0;
    for n in 0..registrations {
        let email = format!("captcha.{n}@example.org");
        let token = format!("captcha-token-{n:04}-{}", "x".repeat(20));
        turnstile.issue_token(
            &token,
            TokenDetails {
                hostname: "app.example.org".to_owned(),
                action: Some("register".to_owned()),
                score: None,
                challenge_ts: rfc3339_now(),
                cdata: None,
            },
        );
        let response = client
            .post(service.url("/v1/users"))
            .json(&json!({
                "email": email,
                "password": "correct horse battery staple",
                "captcha_token": token,
            }))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_default();
        let expected = in_canary("captcha", salt, &email, 30.0);
        if expected {
            assert_eq!(status, 403, "{email} is in the canary: {body}");
            assert!(
                body.to_string().contains("captcha-hostname-mismatch"),
                "{body}"
            );
        } else {
            assert_eq!(status, 201, "{email} is not in the canary: {body}");
        }
        in_share += usize::from(expected);
        tokens.push(token);
    }
    // The share's size over many accounts is the password canary test's; here both sides.
    assert!(
        in_share > 0 && in_share < registrations,
        "{in_share} of {registrations} in a 30 % canary"
    );
    assert_eq!(
        turnstile.server.request_count(),
        registrations,
        "each token is verified exactly once"
    );

    let lines = log_lines(&log_path);
    let captcha: Vec<&Value> = lines
        .iter()
        .filter(|line| line["slot"] == "captcha")
        .collect();
    assert_eq!(captcha.len(), registrations);
    assert_eq!(
        captcha
            .iter()
            .filter(|line| line["role"] == "canary")
            .count(),
        in_share
    );
    let destination = format!("{}/turnstile/v0/siteverify", turnstile.url());
    for line in &captcha {
        let call = &line["egress"][0];
        assert_eq!(call["destination"], destination.as_str(), "{line}");
        assert_eq!(call["method"], "POST");
        assert_eq!(call["status"], 200);
        assert_eq!(call["cached"], false);
    }
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(!text.contains("@example.org"), "an email is in the log");
    assert!(!text.contains("correct horse"), "a password is in the log");
    assert!(!text.contains(REAL_SECRET), "the secret is in the log");
    for token in &tokens {
        assert!(!text.contains(token.as_str()), "a token is in the log");
    }
}
