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
    assert!(record.fail_policy_applied.unwrap().contains("deadline"));
}

#[tokio::test]
async fn unbounded_memory_growth_is_stopped_by_the_cap() {
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
