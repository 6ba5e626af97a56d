//! Hostile plugins are contained: deadline, memory cap and traps become typed errors, and the
//! host goes on serving other decisions.

use harness::{PluginDir, components, password, password_policy_component, slot};
use policy_host::{PluginError, PluginKind, PolicyHost, Verdict};
use std::{
    path::Path,
    time::{Duration, Instant},
};

async fn host_with_hostile_plugin() -> (PluginDir, PolicyHost) {
    let dir = PluginDir::new().unwrap();
    dir.publish("password-policy", password_policy_component())
        .unwrap();
    dir.publish("hostile", Path::new(components::HOSTILE_POLICY))
        .unwrap();
    let mut config = dir.config();
    config.limits.deadline = Duration::from_millis(200);
    config.limits.memory_bytes = 16 << 20;
    config
        .slots
        .insert("hostile".to_owned(), slot(PluginKind::PasswordPolicy, &[]));
    let host = PolicyHost::start(&config).await.unwrap();
    (dir, host)
}

async fn still_serving(host: &PolicyHost) {
    let record = host
        .try_evaluate_password("password-policy", &password("correct horse battery staple"))
        .await
        .unwrap();
    assert_eq!(record.decision.verdict, Verdict::Allow);
    let record = host
        .try_evaluate_password("hostile", &password("an ordinary request"))
        .await
        .unwrap();
    assert_eq!(record.decision.verdict, Verdict::Allow);
}

#[tokio::test]
async fn an_infinite_loop_is_stopped_by_the_deadline() {
    let _exclusive = harness::exclusive().await;
    let (_dir, host) = host_with_hostile_plugin().await;
    let started = Instant::now();
    let error = host
        .try_evaluate_password("hostile", &password("spin-forever"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&error, PluginError::DeadlineExceeded { name, version, deadline } if name == "hostile" && version == "6.6.6-hostile" && *deadline == Duration::from_millis(200)),
        "{error}"
    );
    assert!(
        took >= Duration::from_millis(200),
        "stopped at the deadline, not before: {took:?}"
    );
    still_serving(&host).await;

    // Through the fail policy: denied, with the reason recorded.
    let record = host
        .evaluate_password("hostile", &password("spin-forever"))
        .await;
    assert_eq!(record.decision.verdict, Verdict::Deny);
    assert_eq!(record.decision.codes(), ["password-policy-unavailable"]);
    assert!(matches!(
        record.fail_policy_applied,
        Some(PluginError::DeadlineExceeded { .. })
    ));
}

#[tokio::test]
async fn unbounded_memory_growth_is_stopped_by_the_cap() {
    let _exclusive = harness::exclusive().await;
    let (_dir, host) = host_with_hostile_plugin().await;
    let error = host
        .try_evaluate_password("hostile", &password("eat-memory"))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, PluginError::MemoryLimit { name, limit_bytes, .. } if name == "hostile" && *limit_bytes == 16 << 20),
        "{error}"
    );
    still_serving(&host).await;
}

#[tokio::test]
async fn a_trap_is_reported_with_the_plugin_panic_message() {
    let (_dir, host) = host_with_hostile_plugin().await;
    let error = host
        .try_evaluate_password("hostile", &password("panic-now"))
        .await
        .unwrap_err();
    match &error {
        PluginError::Trap {
            name,
            version,
            message,
        } => {
            assert_eq!(
                (name.as_str(), version.as_str()),
                ("hostile", "6.6.6-hostile")
            );
            assert!(message.contains("panics on purpose"), "{message}");
        }
        other => panic!("expected a trap, got {other}"),
    }
    still_serving(&host).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_decisions_running_at_once_do_not_stop_the_others() {
    let _exclusive = harness::exclusive().await;
    let (_dir, host) = host_with_hostile_plugin().await;
    let host = std::sync::Arc::new(host);
    let mut hostile = Vec::new();
    for trigger in ["spin-forever", "eat-memory", "panic-now", "spin-forever"] {
        let host = host.clone();
        hostile.push(tokio::spawn(async move {
            host.try_evaluate_password("hostile", &password(trigger))
                .await
        }));
    }
    for _ in 0..50 {
        still_serving(&host).await;
    }
    for task in hostile {
        assert!(task.await.unwrap().is_err());
    }
    still_serving(&host).await;
}

// ---------------------------------------------------------------------------------------------
// Plugins that wait instead of computing: a `wasi:clocks` sleep is not stopped by epoch
// interruption, so the host's timer must stop it, for every kind and for `info()` too.

/// The deadline of the waiting-plugin tests.
const WAIT_DEADLINE: Duration = Duration::from_millis(200);

/// Deadline + 2 epoch ticks (5 ms each), plus room for a loaded 2-core machine to schedule the
/// task; far below the plugins' 30 s sleeps.
fn ends_near_the_deadline(took: Duration) -> bool {
    took < WAIT_DEADLINE + Duration::from_millis(10) + Duration::from_millis(150)
}

async fn host_with_sleepers(
    deadline: Duration,
    tweak: impl FnOnce(&mut policy_host::HostConfig),
) -> (PluginDir, PolicyHost) {
    let dir = PluginDir::new().unwrap();
    dir.publish("password-policy", password_policy_component())
        .unwrap();
    dir.publish("sleeping-policy", Path::new(components::SLEEPING_POLICY))
        .unwrap();
    dir.publish("sleeping-breach", Path::new(components::SLEEPING_BREACH))
        .unwrap();
    dir.publish("sleeping-captcha", Path::new(components::SLEEPING_CAPTCHA))
        .unwrap();
    let mut config = dir.config();
    config.watch = false;
    config.limits.deadline = deadline;
    for (name, kind) in [
        ("sleeping-policy", PluginKind::PasswordPolicy),
        ("sleeping-breach", PluginKind::BreachCheck),
        ("sleeping-captcha", PluginKind::Captcha),
    ] {
        config.slots.insert(name.to_owned(), slot(kind, &[]));
    }
    tweak(&mut config);
    let host = PolicyHost::start(&config).await.unwrap();
    for name in ["sleeping-policy", "sleeping-breach", "sleeping-captcha"] {
        assert!(
            host.catalog().slot(name).unwrap().current().is_some(),
            "{name} loaded"
        );
    }
    (dir, host)
}

#[tokio::test]
async fn a_plugin_that_sleeps_is_stopped_at_its_deadline_in_every_kind() {
    let _exclusive = harness::exclusive().await;
    let (_dir, host) = host_with_sleepers(WAIT_DEADLINE, |_| {}).await;

    let started = Instant::now();
    let error = host
        .try_evaluate_password("sleeping-policy", &password("sleep"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(error, PluginError::DeadlineExceeded { .. }),
        "{error}"
    );
    assert!(ends_near_the_deadline(took), "evaluate took {took:?}");

    let started = Instant::now();
    let record = host.check_breach("sleeping-breach", "sleep").await;
    let took = started.elapsed();
    assert!(
        matches!(
            record.record.fail_policy_applied,
            Some(PluginError::DeadlineExceeded { .. })
        ),
        "{:?}",
        record.record
    );
    assert!(ends_near_the_deadline(took), "check took {took:?}");

    let started = Instant::now();
    let record = host
        .verify_captcha(
            "sleeping-captcha",
            &policy_host::CaptchaInput {
                token: "sleep".to_owned(),
                action: "login".to_owned(),
                ..policy_host::CaptchaInput::default()
            },
        )
        .await;
    let took = started.elapsed();
    assert!(
        matches!(
            record.fail_policy_applied,
            Some(PluginError::DeadlineExceeded { .. })
        ),
        "{record:?}"
    );
    assert_eq!(
        record.decision.verdict,
        Verdict::Deny,
        "captcha fails closed"
    );
    assert!(ends_near_the_deadline(took), "verify took {took:?}");
}

#[tokio::test]
async fn a_candidate_whose_info_sleeps_is_refused_within_its_deadline_and_rollback_does_not_wait() {
    let _exclusive = harness::exclusive().await;
    let (dir, host) = host_with_sleepers(WAIT_DEADLINE, |config| {
        config.slots.insert(
            "password-policy".to_owned(),
            slot(PluginKind::PasswordPolicy, &[("sleep-in-info", "true")]),
        );
    })
    .await;
    let catalog = host.catalog().clone();
    // Two good versions, so there is something to roll back to.
    dir.publish(
        "password-policy",
        Path::new(components::PASSWORD_POLICY_NEXT),
    )
    .unwrap();
    catalog.reload("password-policy").await.unwrap();

    // A candidate whose info() sleeps 30 s.
    dir.publish("password-policy", Path::new(components::SLEEPING_POLICY))
        .unwrap();
    let reloading = {
        let catalog = catalog.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let result = catalog.reload("password-policy").await;
            (result, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    let started = Instant::now();
    let restored = catalog.rollback("password-policy").await.unwrap();
    let rollback_took = started.elapsed();
    assert!(
        rollback_took < Duration::from_millis(50),
        "a rollback does not wait for the candidate: {rollback_took:?}"
    );
    assert_ne!(&*restored.version, harness::components::NEXT_VERSION);

    let (result, took) = reloading.await.unwrap();
    let error = result.unwrap_err();
    assert!(
        matches!(
            &error,
            policy_host::LoadError::SmokeFailed {
                source: PluginError::DeadlineExceeded { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(ends_near_the_deadline(took), "reload took {took:?}");
    still_serving_password_policy(&host).await;
}

async fn still_serving_password_policy(host: &PolicyHost) {
    let record = host
        .try_evaluate_password("password-policy", &password("correct horse battery staple"))
        .await
        .unwrap();
    assert_eq!(record.decision.verdict, Verdict::Allow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_of_sleeping_decisions_cannot_starve_another_slot() {
    let _exclusive = harness::exclusive().await;
    // Long enough that the sleepers hold their instances for the whole run.
    let (_dir, host) = host_with_sleepers(Duration::from_secs(3), |_| {}).await;
    let host = std::sync::Arc::new(host);
    let sleepers: Vec<_> = (0..300)
        .map(|_| {
            let host = host.clone();
            tokio::spawn(async move {
                host.try_evaluate_password("sleeping-policy", &password("sleep"))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut latencies = Vec::with_capacity(1_000);
    for _ in 0..250 {
        let batch: Vec<_> = (0..4)
            .map(|_| {
                let host = host.clone();
                tokio::spawn(async move {
                    let started = Instant::now();
                    let record = host
                        .try_evaluate_password(
                            "password-policy",
                            &password("correct horse battery staple"),
                        )
                        .await;
                    (record, started.elapsed())
                })
            })
            .collect();
        for task in batch {
            let (record, took) = task.await.unwrap();
            assert_eq!(record.unwrap().decision.verdict, Verdict::Allow);
            latencies.push(took);
        }
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    assert!(p99 < Duration::from_millis(20), "p99 {p99:?}");

    let mut overloaded = 0;
    for task in sleepers {
        match task.await.unwrap() {
            Err(PluginError::Overloaded { name, .. }) => {
                assert_eq!(name, "sleeping-policy");
                overloaded += 1;
            }
            Err(PluginError::DeadlineExceeded { .. }) => {}
            other => panic!("a sleeper ended with {other:?}"),
        }
    }
    assert!(
        overloaded > 0,
        "the sleeping slot was held to its share of the pool"
    );
}

// ---------------------------------------------------------------------------------------------
// Secrets never come back: an allowed upstream that reflects the request (headers into response
// headers and the body, plain or gzip) hands the plugin no form of a bound secret, and what the
// plugin then returns reaches no response and no log line.

const SECRET: &str = "pl41n-s3cr3t-of-the-h0st/+=";

/// Every form the tests look for the secret in.
fn secret_forms() -> Vec<String> {
    use base64::Engine;
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let mut forms = vec![SECRET.to_owned(), hex::encode(SECRET)];
    for engine in &engines {
        forms.push(engine.encode(SECRET).trim_end_matches('=').to_owned());
    }
    forms
}

fn assert_no_secret(what: &str, text: &str) {
    for form in secret_forms() {
        assert!(
            !text.contains(&form),
            "{what} holds the secret as {form:?}: {text}"
        );
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Reflects every request header as `x-echo-<name>` and the whole request in the body, in
/// several encodings; gzips the body when the request accepts gzip, or always when `always_gzip`.
async fn reflector(always_gzip: bool) -> harness::upstream::TestServer {
    use base64::Engine;
    harness::upstream::TestServer::start(move |request| {
        let mut headers: Vec<(String, String)> = request
            .headers
            .iter()
            .map(|(name, value)| (format!("x-echo-{name}"), value.clone()))
            .collect();
        let everything = request.everything();
        let body = format!(
            "{everything}\nb64={}\nhex={}",
            base64::engine::general_purpose::STANDARD.encode(&everything),
            hex::encode(&everything)
        );
        let wants_gzip = request
            .header("accept-encoding")
            .is_some_and(|value| value.contains("gzip"));
        let body = if always_gzip || wants_gzip {
            headers.push(("content-encoding".to_owned(), "gzip".to_owned()));
            gzip(body.as_bytes())
        } else {
            body.into_bytes()
        };
        harness::upstream::Reply::Respond {
            status: 200,
            headers,
            body,
        }
    })
    .await
}

async fn host_reaching(upstream: &harness::upstream::TestServer) -> (PluginDir, PolicyHost) {
    let dir = PluginDir::new().unwrap();
    dir.publish("hostile", Path::new(components::HOSTILE_EGRESS))
        .unwrap();
    let mut config = dir.config();
    config.egress.secrets.insert(
        "api-key".to_owned(),
        policy_host::egress::config::SecretSource::Value(SECRET.to_owned()),
    );
    let mut hostile = slot(PluginKind::BreachCheck, &[]);
    hostile.egress = vec![policy_host::egress::config::DestinationConfig {
        url: upstream.url(),
        allow_private: true,
        secrets: vec!["api-key".to_owned()],
        cache_ttl: None,
        idempotency_header: None,
        policy: Some(harness::quick_policy()),
    }];
    config.slots.insert("hostile".to_owned(), hostile);
    (dir, PolicyHost::start(&config).await.unwrap())
}

async fn plugin_sees(host: &PolicyHost, command: &str) -> String {
    let record = host.check_breach("hostile", command).await;
    match record.outcome {
        policy_host::BreachOutcome::Unknown { reason } => reason,
        other => panic!("the hostile plugin answers unknown: {other:?}"),
    }
}

#[tokio::test]
async fn a_reflected_secret_never_reaches_the_plugin_or_a_log() {
    // The capturing subscriber is global: a process of its own keeps it off other tests.
    if !harness::process::own_process(
        module_path!(),
        "a_reflected_secret_never_reaches_the_plugin_or_a_log",
    ) {
        return;
    }
    harness::log_capture::install();
    let upstream = reflector(false).await;
    let (_dir, host) = host_reaching(&upstream).await;
    let url = format!("{}/echo", upstream.url());

    // Reflected into response headers and the body.
    let seen = plugin_sees(
        &host,
        &format!("get-with-header {url} authorization Bearer:{{{{secret:api-key}}}}"),
    )
    .await;
    assert!(seen.starts_with("status=200"), "{seen}");
    assert!(seen.contains("x-echo-authorization"), "{seen}");
    assert_no_secret("what the plugin read", &seen);

    // The plugin asks for gzip so the scrub would see compressed bytes: the gateway decides
    // the encoding, so the upstream is asked for identity and the answer is scrubbed.
    let seen = plugin_sees(
        &host,
        &format!(
            "get-with-headers {url} authorization={{{{secret:api-key}}}} accept-encoding=gzip"
        ),
    )
    .await;
    assert!(seen.starts_with("status=200"), "{seen}");
    assert_no_secret("what the plugin read through gzip", &seen);
    let last = upstream.requests().pop().unwrap();
    assert_eq!(
        last.header("authorization"),
        Some(SECRET),
        "the secret was sent"
    );
    assert_eq!(last.header("accept-encoding"), Some("identity"));

    // The secret in the body of a POST, reflected.
    let seen = plugin_sees(&host, &format!("post {url} key={{{{secret:api-key}}}}")).await;
    assert_no_secret("a reflected body", &seen);

    assert_no_secret("the log", &harness::log_capture::captured());
}

#[tokio::test]
async fn an_upstream_that_compresses_unasked_is_refused_not_scrubbed_blind() {
    // The capturing subscriber is global: a process of its own keeps it off other tests.
    if !harness::process::own_process(
        module_path!(),
        "an_upstream_that_compresses_unasked_is_refused_not_scrubbed_blind",
    ) {
        return;
    }
    harness::log_capture::install();
    let upstream = reflector(true).await;
    let (_dir, host) = host_reaching(&upstream).await;
    let seen = plugin_sees(
        &host,
        &format!(
            "get-with-header {}/echo authorization {{{{secret:api-key}}}}",
            upstream.url()
        ),
    )
    .await;
    assert!(seen.starts_with("error="), "{seen}");
    assert_no_secret("what the plugin read", &seen);
    assert_no_secret("the log", &harness::log_capture::captured());
}

#[tokio::test]
async fn what_a_plugin_returns_reaches_no_anonymous_response_and_no_log() {
    // The capturing subscriber is global: a process of its own keeps it off other tests.
    if !harness::process::own_process(
        module_path!(),
        "what_a_plugin_returns_reaches_no_anonymous_response_and_no_log",
    ) {
        return;
    }
    harness::log_capture::install();
    let upstream = reflector(false).await;
    let service = harness::service::TestService::start(&upstream.url(), None, |config| {
        config.plugins.egress.secrets.insert(
            "api-key".to_owned(),
            policy_host::egress::config::SecretSource::Value(SECRET.to_owned()),
        );
        let slot = config.plugins.slots.get_mut("breach-check").unwrap();
        slot.egress[0].secrets = vec!["api-key".to_owned()];
    })
    .await
    .unwrap();
    service
        .plugins
        .publish("breach-check", Path::new(components::HOSTILE_EGRESS))
        .unwrap();
    service
        .state
        .host
        .catalog()
        .reload("breach-check")
        .await
        .unwrap();

    let command = format!(
        "get-with-header {}/range/ABCDE x-api-key {{{{secret:api-key}}}}",
        upstream.url()
    );
    let response = reqwest::Client::new()
        .post(service.url("/v1/password/check"))
        .json(&serde_json::json!({ "password": command }))
        .send()
        .await
        .unwrap();
    let body = response.text().await.unwrap();
    assert!(
        upstream
            .requests()
            .iter()
            .any(|request| request.header("x-api-key") == Some(SECRET)),
        "the plugin did reach the upstream with the secret"
    );
    assert_no_secret("the public response", &body);
    assert!(
        !body.contains("x-echo") && !body.contains("status=200"),
        "no plugin text in a public response: {body}"
    );
    assert_no_secret("the log", &harness::log_capture::captured());
}
