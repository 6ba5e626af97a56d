//! Hot swap: new versions are picked up from the directory under load, bad candidates are
//! rejected while the old version keeps serving, and rollback restores the previous version.

use harness::{
    PluginDir, components, host_with_password_policy, password, password_policy_component,
    wait_until,
};
use policy_host::{LoadError, PolicyHost, catalog::ReloadOutcome};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

const SWAP_BOUND: Duration = Duration::from_secs(10);

async fn serving_version(host: &PolicyHost) -> String {
    let record = host
        .try_evaluate_password("password-policy", &password("correct horse battery staple"))
        .await
        .unwrap();
    record.plugin.unwrap().version.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_written_under_load_takes_over_without_a_failed_decision() {
    let (dir, host) = host_with_password_policy().await.unwrap();
    let host = Arc::new(host);
    let old_version = password_policy::PLUGIN_VERSION;
    assert_eq!(serving_version(&host).await, old_version);

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..4 {
        let (host, stop, failures) = (host.clone(), stop.clone(), failures.clone());
        workers.push(tokio::spawn(async move {
            let mut versions = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let input = password(&format!(
                    "worker {worker} says correct horse battery staple"
                ));
                match host.try_evaluate_password("password-policy", &input).await {
                    Ok(record) => versions.push(record.plugin.unwrap().version.to_string()),
                    Err(error) => {
                        eprintln!("decision failed during the swap: {error}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::task::yield_now().await;
            }
            versions
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    dir.publish(
        "password-policy",
        std::path::Path::new(components::PASSWORD_POLICY_NEXT),
    )
    .unwrap();

    let took = wait_until(SWAP_BOUND, || async {
        serving_version(&host).await == components::NEXT_VERSION
    })
    .await;
    assert!(
        took.is_some(),
        "the new version did not take over within {SWAP_BOUND:?}"
    );
    // Once the new version has been seen, every decision that starts afterwards uses it.
    for _ in 0..20 {
        assert_eq!(serving_version(&host).await, components::NEXT_VERSION);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.store(true, Ordering::Relaxed);

    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "decisions failed during the swap"
    );
    assert!(
        all.iter().any(|version| version == old_version),
        "load ran before the swap"
    );
    assert!(
        all.iter()
            .any(|version| version == components::NEXT_VERSION),
        "load ran after the swap"
    );
    // Each worker sees old versions, then new ones: never back and forth.
    let first_new = all
        .iter()
        .position(|version| version == components::NEXT_VERSION)
        .unwrap();
    assert!(
        all[..first_new]
            .iter()
            .all(|version| version == old_version)
    );

    let status = host.catalog().status();
    let slot = status
        .iter()
        .find(|slot| slot.name == "password-policy")
        .unwrap();
    assert_eq!(
        &*slot.current.as_ref().unwrap().identity.version,
        components::NEXT_VERSION
    );
    assert_eq!(&*slot.previous.as_ref().unwrap().version, old_version);
    assert!(slot.last_error.is_none());
}

/// Publishes a bad candidate, waits for the watcher to reject it, and checks the old version
/// still serves. Returns the recorded error.
async fn rejected(dir: &PluginDir, host: &PolicyHost, bytes: &[u8]) -> String {
    let before = serving_version(host).await;
    dir.publish_bytes("password-policy", bytes).unwrap();
    let last_error = || {
        host.catalog()
            .status()
            .into_iter()
            .find(|slot| slot.name == "password-policy")
            .and_then(|slot| slot.last_error)
    };
    wait_until(SWAP_BOUND, || async { last_error().is_some() })
        .await
        .expect("the candidate was rejected");
    assert_eq!(
        serving_version(host).await,
        before,
        "the old version keeps serving"
    );
    let error = last_error().unwrap();
    // Put the good file back so the next candidate is judged on its own.
    dir.publish("password-policy", password_policy_component())
        .unwrap();
    wait_until(SWAP_BOUND, || async { last_error().is_none() })
        .await
        .expect("the good file is accepted again");
    error
}

#[tokio::test]
async fn bad_candidates_are_rejected_and_the_old_version_keeps_serving() {
    let (dir, host) = host_with_password_policy().await.unwrap();

    let error = rejected(&dir, &host, b"this is not webassembly").await;
    assert!(
        error.contains("not a valid WebAssembly component"),
        "{error}"
    );

    let core_module = b"\0asm\x01\0\0\0";
    let error = rejected(&dir, &host, core_module).await;
    assert!(
        error.contains("not a valid WebAssembly component"),
        "{error}"
    );

    let truncated = std::fs::read(password_policy_component()).unwrap();
    let error = rejected(&dir, &host, &truncated[..truncated.len() / 2]).await;
    assert!(
        error.contains("not a valid WebAssembly component"),
        "{error}"
    );

    let error = rejected(
        &dir,
        &host,
        &std::fs::read(components::WRONG_WORLD).unwrap(),
    )
    .await;
    assert!(
        error.contains("implements the breach-check world, but this slot expects password-policy"),
        "{error}"
    );

    let error = rejected(
        &dir,
        &host,
        &std::fs::read(components::TRAPPING_POLICY).unwrap(),
    )
    .await;
    assert!(error.contains("failed its smoke decision"), "{error}");
    assert!(
        error.contains("broken on purpose"),
        "the plugin's panic message is reported: {error}"
    );
}

#[tokio::test]
async fn explicit_reload_reports_each_rejection_reason() {
    let dir = PluginDir::new().unwrap();
    dir.publish("password-policy", password_policy_component())
        .unwrap();
    let mut config = dir.config();
    config.watch = false;
    let host = PolicyHost::start(&config).await.unwrap();
    let catalog = host.catalog();

    assert!(matches!(
        catalog.reload("password-policy").await,
        Ok(ReloadOutcome::Unchanged(_))
    ));
    dir.publish(
        "password-policy",
        std::path::Path::new(components::WRONG_WORLD),
    )
    .unwrap();
    assert!(matches!(
        catalog.reload("password-policy").await,
        Err(LoadError::WrongWorld { .. })
    ));
    dir.publish_bytes("password-policy", b"garbage").unwrap();
    assert!(matches!(
        catalog.reload("password-policy").await,
        Err(LoadError::NotAComponent { .. })
    ));
    dir.publish(
        "password-policy",
        std::path::Path::new(components::TRAPPING_POLICY),
    )
    .unwrap();
    assert!(matches!(
        catalog.reload("password-policy").await,
        Err(LoadError::SmokeFailed { .. })
    ));
    assert!(matches!(
        catalog.reload("no-such-plugin").await,
        Err(LoadError::UnknownSlot { .. })
    ));
    assert_eq!(
        serving_version(&host).await,
        password_policy::PLUGIN_VERSION
    );

    dir.publish(
        "password-policy",
        std::path::Path::new(components::PASSWORD_POLICY_NEXT),
    )
    .unwrap();
    let outcome = catalog.reload("password-policy").await.unwrap();
    let ReloadOutcome::Swapped { from, to } = outcome else {
        panic!("expected a swap, got {outcome:?}")
    };
    assert_eq!(&*from.unwrap().version, password_policy::PLUGIN_VERSION);
    assert_eq!(&*to.version, components::NEXT_VERSION);
}

#[tokio::test]
async fn a_sha256_pin_refuses_any_other_file() {
    let dir = PluginDir::new().unwrap();
    dir.publish("password-policy", password_policy_component())
        .unwrap();
    let pinned = policy_host::artifact_cache::sha256_hex(
        &std::fs::read(password_policy_component()).unwrap(),
    );
    let mut config = dir.config();
    config.watch = false;
    config.slots.insert(
        "password-policy".to_owned(),
        policy_host::PluginConfig {
            sha256: Some(pinned.to_uppercase()),
            ..Default::default()
        },
    );
    let host = PolicyHost::start(&config).await.unwrap();
    assert_eq!(
        serving_version(&host).await,
        password_policy::PLUGIN_VERSION
    );
    dir.publish(
        "password-policy",
        std::path::Path::new(components::PASSWORD_POLICY_NEXT),
    )
    .unwrap();
    let error = host.catalog().reload("password-policy").await.unwrap_err();
    assert!(
        matches!(&error, LoadError::PinMismatch { pinned: p, .. } if *p == pinned),
        "{error}"
    );
    assert_eq!(
        serving_version(&host).await,
        password_policy::PLUGIN_VERSION
    );
}

#[tokio::test]
async fn rollback_restores_the_previous_version_and_can_be_undone() {
    let (dir, host) = host_with_password_policy().await.unwrap();
    let catalog = host.catalog();
    assert!(
        catalog.rollback("password-policy").await.is_err(),
        "nothing to roll back to yet"
    );

    dir.publish(
        "password-policy",
        std::path::Path::new(components::PASSWORD_POLICY_NEXT),
    )
    .unwrap();
    wait_until(SWAP_BOUND, || async {
        serving_version(&host).await == components::NEXT_VERSION
    })
    .await
    .expect("the new version took over");

    let restored = catalog.rollback("password-policy").await.unwrap();
    assert_eq!(&*restored.version, password_policy::PLUGIN_VERSION);
    assert_eq!(
        serving_version(&host).await,
        password_policy::PLUGIN_VERSION
    );
    // A second rollback undoes the first.
    let restored = catalog.rollback("password-policy").await.unwrap();
    assert_eq!(&*restored.version, components::NEXT_VERSION);
    assert_eq!(serving_version(&host).await, components::NEXT_VERSION);
}

#[tokio::test]
async fn a_cached_artifact_is_reused_across_hosts() {
    let dir = PluginDir::new().unwrap();
    let cache = tempfile::tempdir().unwrap();
    dir.publish("password-policy", password_policy_component())
        .unwrap();
    let mut config = dir.config();
    config.watch = false;
    config.cache_dir = Some(cache.path().to_path_buf());
    let first = PolicyHost::start(&config).await.unwrap();
    assert_eq!(
        serving_version(&first).await,
        password_policy::PLUGIN_VERSION
    );
    let artifacts: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(
        artifacts.len(),
        1,
        "one artifact per content hash: {artifacts:?}"
    );
    let sha = policy_host::artifact_cache::sha256_hex(
        &std::fs::read(password_policy_component()).unwrap(),
    );
    assert!(
        artifacts[0]
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&sha)
    );

    // Corrupt the artifact: the second host must notice, recompile, and still serve.
    std::fs::write(&artifacts[0], b"not an artifact").unwrap();
    let second = PolicyHost::start(&config).await.unwrap();
    assert_eq!(
        serving_version(&second).await,
        password_policy::PLUGIN_VERSION
    );
}
