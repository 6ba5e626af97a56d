//! The bundled breach-check plugin against a local Pwned Passwords compatible range server:
//! privacy (only prefixes leave), correctness, threshold, faults, breaker, retries, cache.

use harness::{
    PluginDir, breach_check_component, breach_slot,
    hibp::{HibpServer, Mode},
    host_with_breach_check, quick_policy,
    upstream::closed_port,
};
use policy_host::{
    BreachOutcome, FailPolicy, PolicyHost, Verdict,
    egress::config::{BreakerConfig, CallPolicy},
};
use std::{sync::Arc, time::Duration};

const CORPUS: &[(&str, u64)] = &[
    ("password123", 2_254_650),
    ("Tr0ub4dor&3", 3),
    ("hunter2", 17_000),
];

#[tokio::test]
async fn only_the_hash_prefix_leaves_and_outcomes_are_right() {
    let hibp = HibpServer::start(CORPUS).await;
    let (_dir, host) = host_with_breach_check(&hibp.server.url(), quick_policy(), &[])
        .await
        .unwrap();

    let breached = host.check_breach("breach-check", "password123").await;
    assert_eq!(
        breached.outcome,
        BreachOutcome::Breached { count: 2_254_650 }
    );
    assert_eq!(breached.record.decision.verdict, Verdict::Deny);
    assert_eq!(breached.record.decision.codes(), ["breached"]);
    assert_eq!(
        &*breached.record.plugin.as_ref().unwrap().name,
        "breach-check"
    );

    let clean = host
        .check_breach("breach-check", "correct horse battery staple")
        .await;
    assert_eq!(clean.outcome, BreachOutcome::Clean);
    assert_eq!(clean.record.decision.verdict, Verdict::Allow);
    assert!(clean.record.fail_policy_applied.is_none());

    let requests = hibp.server.requests();
    assert_eq!(requests.len(), 2);
    for (request, password) in requests
        .iter()
        .zip(["password123", "correct horse battery staple"])
    {
        let (prefix, suffix) = breach_check::hash::prefix_and_suffix(password);
        assert_eq!(request.method, "GET");
        assert_eq!(
            request.path,
            format!("/range/{prefix}"),
            "only the 5-hex prefix is sent"
        );
        assert_eq!(
            request.header("add-padding"),
            Some("true"),
            "padding is always asked for"
        );
        assert!(
            request
                .header("user-agent")
                .is_some_and(|agent| agent.starts_with("user-service-breach-check/"))
        );
        let seen = request.everything();
        assert!(
            !seen.contains(&suffix) && !seen.to_lowercase().contains(&suffix.to_lowercase()),
            "the rest of the hash never leaves"
        );
        assert!(!seen.contains(password), "the password never leaves");
    }
}

#[tokio::test]
async fn the_threshold_comes_from_settings() {
    let hibp = HibpServer::start(CORPUS).await;
    let (_dir, host) = host_with_breach_check(
        &hibp.server.url(),
        quick_policy(),
        &[("max-breaches", "10")],
    )
    .await
    .unwrap();
    assert_eq!(
        host.check_breach("breach-check", "Tr0ub4dor&3")
            .await
            .outcome,
        BreachOutcome::Clean,
        "3 ≤ 10"
    );
    assert_eq!(
        host.check_breach("breach-check", "hunter2").await.outcome,
        BreachOutcome::Breached { count: 17_000 }
    );
}

/// Checks a fresh password (so no cache) with the server in `mode` and returns the outcome's
/// reason, after asserting the default fail policy (open) allowed it with a flag.
async fn unknown_reason(host: &PolicyHost, password: &str) -> String {
    let record = host.check_breach("breach-check", password).await;
    let BreachOutcome::Unknown { reason } = &record.outcome else {
        panic!("expected unknown, got {:?}", record.outcome)
    };
    assert_eq!(
        record.record.decision.verdict,
        Verdict::Allow,
        "fail open by default"
    );
    assert_eq!(record.record.decision.codes(), ["breach-check-unavailable"]);
    assert!(
        record.record.fail_policy_applied.is_some(),
        "the record says the fail policy decided"
    );
    reason.clone()
}

#[tokio::test]
async fn upstream_faults_give_unknown_with_a_reason() {
    let hibp = HibpServer::start(CORPUS).await;
    let mut policy = quick_policy();
    policy.max_response_bytes = 64 << 10;
    let (_dir, host) = host_with_breach_check(&hibp.server.url(), policy, &[])
        .await
        .unwrap();

    hibp.set_mode(Mode::Status(500));
    assert!(
        unknown_reason(&host, "fault one")
            .await
            .contains("HTTP 500")
    );
    hibp.set_mode(Mode::Garbage);
    assert!(
        unknown_reason(&host, "fault two")
            .await
            .contains("no valid SUFFIX:COUNT lines")
    );
    hibp.set_mode(Mode::Huge(2 << 20));
    let reason = unknown_reason(&host, "fault three").await;
    assert!(reason.contains("HttpResponseBodySize"), "{reason}");
    hibp.set_mode(Mode::ResetMidBody);
    let reason = unknown_reason(&host, "fault four").await;
    assert!(reason.contains("HttpResponseIncomplete"), "{reason}");
    hibp.set_mode(Mode::Slow(Duration::from_secs(3)));
    let reason = unknown_reason(&host, "fault five").await;
    assert!(reason.contains("Timeout"), "{reason}");
    hibp.set_mode(Mode::Healthy);
    assert_eq!(
        host.check_breach("breach-check", "password123")
            .await
            .outcome,
        BreachOutcome::Breached { count: 2_254_650 }
    );
}

#[tokio::test]
async fn an_upstream_that_is_down_gives_unknown_and_fail_closed_denies() {
    let base = format!("http://127.0.0.1:{}", closed_port().await);
    let dir = PluginDir::new().unwrap();
    dir.publish("breach-check", breach_check_component())
        .unwrap();
    let mut config = dir.config();
    let mut slot = breach_slot(&base, quick_policy(), &[]);
    slot.fail_policy = Some(FailPolicy::Closed);
    config.slots.insert("breach-check".to_owned(), slot);
    let host = PolicyHost::start(&config).await.unwrap();
    let record = host.check_breach("breach-check", "anything at all").await;
    let BreachOutcome::Unknown { reason } = &record.outcome else {
        panic!("{:?}", record.outcome)
    };
    assert!(reason.contains("ConnectionRefused"), "{reason}");
    assert_eq!(
        record.record.decision.verdict,
        Verdict::Deny,
        "fail closed as configured"
    );
    assert_eq!(record.record.decision.codes(), ["breach-check-unavailable"]);
}

#[tokio::test]
async fn timeouts_that_cannot_fit_inside_the_deadline_are_refused_at_start() {
    let dir = PluginDir::new().unwrap();
    dir.publish("breach-check", breach_check_component())
        .unwrap();
    let mut config = dir.config();
    config.limits.deadline = Duration::from_millis(300);
    let mut policy = quick_policy_within(Duration::from_millis(250));
    policy.first_byte_timeout = Duration::from_secs(10);
    config.slots.insert(
        "breach-check".to_owned(),
        breach_slot("http://127.0.0.1:9", policy, &[]),
    );
    let error = PolicyHost::start(&config).await.err().unwrap().to_string();
    assert!(
        error.contains("first-byte-timeout-ms = 10000") && error.contains("deadline-ms = 300"),
        "names both numbers: {error}"
    );

    config.slots.insert(
        "breach-check".to_owned(),
        breach_slot(
            "http://127.0.0.1:9",
            quick_policy_within(Duration::from_millis(250)),
            &[("timeout-ms", "1500")],
        ),
    );
    let error = PolicyHost::start(&config).await.err().unwrap().to_string();
    assert!(
        error.contains("timeout-ms = 1500") && error.contains("deadline-ms = 300"),
        "the plugin's own timeout too: {error}"
    );
}

#[tokio::test]
async fn a_slow_upstream_is_cut_at_the_decision_deadline() {
    let hibp = HibpServer::start(CORPUS).await;
    hibp.set_mode(Mode::Slow(Duration::from_secs(5)));
    let dir = PluginDir::new().unwrap();
    dir.publish("breach-check", breach_check_component())
        .unwrap();
    let mut config = dir.config();
    config.limits.deadline = Duration::from_millis(300);
    config.slots.insert(
        "breach-check".to_owned(),
        breach_slot(
            &hibp.server.url(),
            quick_policy_within(Duration::from_millis(290)),
            &[("timeout-ms", "290")],
        ),
    );
    let host = PolicyHost::start(&config).await.unwrap();
    let started = std::time::Instant::now();
    let record = host.check_breach("breach-check", "slow one").await;
    let took = started.elapsed();
    assert!(
        matches!(record.outcome, BreachOutcome::Unknown { .. }),
        "{:?}",
        record.outcome
    );
    assert!(
        took < Duration::from_millis(1500),
        "cut at the 300 ms deadline, not after the upstream's 5 s: {took:?}"
    );
}

/// [`quick_policy`] with every timeout set to `timeout`.
fn quick_policy_within(timeout: Duration) -> CallPolicy {
    CallPolicy {
        connect_timeout: timeout,
        first_byte_timeout: timeout,
        between_bytes_timeout: timeout,
        ..quick_policy()
    }
}

#[tokio::test]
async fn the_breaker_opens_stops_traffic_and_closes_after_probes() {
    let hibp = HibpServer::start(CORPUS).await;
    let mut policy = quick_policy();
    policy.breaker = BreakerConfig {
        failure_rate: 0.5,
        minimum_calls: 4,
        open_for: Duration::from_secs(3),
        half_open_probes: 1,
        ..BreakerConfig::default()
    };
    let (_dir, host) = host_with_breach_check(&hibp.server.url(), policy, &[])
        .await
        .unwrap();
    hibp.set_mode(Mode::Status(503));
    for i in 0..4 {
        unknown_reason(&host, &format!("failing {i}")).await;
    }
    assert_eq!(hibp.server.request_count(), 4);
    // Open: no request reaches the upstream, and the plugin is told the destination is unavailable.
    for i in 0..5 {
        let reason = unknown_reason(&host, &format!("while open {i}")).await;
        assert!(reason.contains("DestinationUnavailable"), "{reason}");
    }
    assert_eq!(
        hibp.server.request_count(),
        4,
        "no upstream requests while open"
    );

    hibp.set_mode(Mode::Healthy);
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    assert_eq!(
        host.check_breach("breach-check", "password123")
            .await
            .outcome,
        BreachOutcome::Breached { count: 2_254_650 }
    );
    assert_eq!(
        hibp.server.request_count(),
        5,
        "one half-open probe went through"
    );
    assert_eq!(
        host.check_breach("breach-check", "hunter2").await.outcome,
        BreachOutcome::Breached { count: 17_000 }
    );
    assert_eq!(
        hibp.server.request_count(),
        6,
        "closed again: traffic flows"
    );
}

#[tokio::test]
async fn retries_are_bounded_by_the_budget() {
    let hibp = HibpServer::start(CORPUS).await;
    hibp.set_mode(Mode::Status(503));
    let policy = CallPolicy {
        max_retries: 3,
        retry_base: Duration::from_millis(1),
        retry_cap: Duration::from_millis(5),
        retry_budget_percent: 0.0,
        retry_budget_min_per_sec: 1,
        ..quick_policy()
    };
    let (_dir, host) = host_with_breach_check(&hibp.server.url(), policy, &[])
        .await
        .unwrap();
    let checks = 30;
    for i in 0..checks {
        unknown_reason(&host, &format!("budget {i}")).await;
    }
    let requests = hibp.server.request_count();
    // Without a budget: 30 × 4 = 120. The budget allows 1 retry/s over a 10 s window: ≤ 10.
    assert!(requests > checks, "retries happened: {requests}");
    assert!(
        requests <= checks + 10,
        "retries stayed within the budget: {requests}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_checks_sharing_a_prefix_make_one_request_and_the_cache_serves_repeats() {
    let hibp = HibpServer::start(CORPUS).await;
    let (_dir, host) = host_with_breach_check(&hibp.server.url(), quick_policy(), &[])
        .await
        .unwrap();
    let host = Arc::new(host);
    // These share the SHA-1 prefix ABF7A with "correct horse battery staple".
    let passwords = [
        "correct horse battery staple",
        "shared-prefix-961304",
        "shared-prefix-2233219",
        "shared-prefix-2342622",
        "shared-prefix-4342885",
    ];
    for password in passwords {
        assert_eq!(breach_check::hash::prefix_and_suffix(password).0, "ABF7A");
    }
    let mut tasks = Vec::new();
    for i in 0..50 {
        let host = host.clone();
        let password = passwords[i % passwords.len()];
        tasks.push(tokio::spawn(async move {
            host.check_breach("breach-check", password).await.outcome
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), BreachOutcome::Clean);
    }
    assert_eq!(
        hibp.server.request_count(),
        1,
        "50 concurrent checks, one upstream request"
    );
    for password in passwords {
        assert_eq!(
            host.check_breach("breach-check", password).await.outcome,
            BreachOutcome::Clean
        );
    }
    assert_eq!(
        hibp.server.request_count(),
        1,
        "repeats within the TTL are served from the cache"
    );
}

#[tokio::test]
async fn uncached_lookups_reuse_one_keep_alive_connection() {
    let hibp = HibpServer::start(CORPUS).await;
    let (_dir, host) = host_with_breach_check(&hibp.server.url(), quick_policy(), &[])
        .await
        .unwrap();
    // Different passwords: different prefixes, so every lookup goes upstream.
    for index in 0..10 {
        let record = host
            .check_breach("breach-check", &format!("unique password {index}"))
            .await;
        assert_eq!(record.outcome, BreachOutcome::Clean);
    }
    assert_eq!(hibp.server.request_count(), 10);
    assert_eq!(
        hibp.server.connections_accepted(),
        1,
        "one connection, kept alive and reused"
    );
}

#[tokio::test]
async fn a_pooled_connection_the_server_closed_is_replaced_without_a_failure() {
    let hibp = HibpServer::start(CORPUS).await;
    let (_dir, host) = host_with_breach_check(&hibp.server.url(), quick_policy(), &[])
        .await
        .unwrap();
    let first = host.check_breach("breach-check", "first unique").await;
    assert_eq!(first.outcome, BreachOutcome::Clean);
    // The server drops its side of every idle connection (as one whose keep-alive expired).
    hibp.server.close_connections();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let second = host.check_breach("breach-check", "second unique").await;
    assert_eq!(second.outcome, BreachOutcome::Clean, "{:?}", second.record);
    assert_eq!(hibp.server.connections_accepted(), 2);
}
