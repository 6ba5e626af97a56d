//! Plugin distribution: components pulled from an OCI registry by digest, and verified by
//! signature before they compile. Every test starts its own registry on 127.0.0.1.

use harness::{
    PluginDir, components, password, password_policy_component,
    registry::{TestRegistry, sign, signing_key, trust},
    service::{ADMIN_TOKEN, TestService},
    wait_until,
};
use policy_host::{
    HostConfig, LoadError, PolicyHost,
    catalog::ReloadOutcome,
    source::{
        Origin, PullPolicy, SourceError,
        signature::{SignatureError, SigningKey, TrustConfig},
    },
};
use std::{path::Path, time::Duration};
use user_service::ServiceConfig;

const SLOT: &str = "password-policy";

fn next_component() -> Vec<u8> {
    std::fs::read(components::PASSWORD_POLICY_NEXT).expect("the next test component")
}

fn bundled_component() -> Vec<u8> {
    std::fs::read(password_policy_component()).expect("the bundled password-policy component")
}

/// A host configuration for `dir` whose password-policy slot pulls `source` from `registry`.
fn oci_config(
    dir: &PluginDir,
    registry: &TestRegistry,
    source: &str,
    pull_policy: Option<PullPolicy>,
) -> HostConfig {
    let mut config = dir.config();
    config.watch = false;
    config.insecure_registries = vec![registry.address()];
    let mut slot = harness::slot(policy_host::PluginKind::PasswordPolicy, &[]);
    slot.source = Some(source.to_owned());
    slot.pull_policy = pull_policy;
    config.slots.insert(SLOT.to_owned(), slot);
    config
}

/// The serving version's provenance, through a real decision.
async fn serving(host: &PolicyHost) -> (String, String, Vec<String>) {
    let record = host
        .try_evaluate_password(SLOT, &password("correct horse battery staple"))
        .await
        .expect("a decision");
    let plugin = record.plugin.expect("a plugin decided");
    let provenance = plugin
        .provenance
        .expect("provenance in the decision record");
    (
        plugin.version.to_string(),
        provenance.digest.clone(),
        provenance.verified_by.clone(),
    )
}

/// A fresh signing key, and the bundled component pushed as `plugins/pp:1` with that key's
/// signature; the key and the pinned reference.
async fn push_signed_bundled(registry: &TestRegistry) -> (SigningKey, String) {
    let key = signing_key();
    let bytes = bundled_component();
    let pinned = registry
        .push("plugins/pp", "1", &bytes, &[sign(&key, &bytes)])
        .await
        .expect("push");
    (key, pinned)
}

/// Lets the service pull from the (plain HTTP) registry at `address`, trusting `trust`; the
/// bundled breach check, an unsigned file, runs unsigned.
fn trust_registry(config: &mut ServiceConfig, address: String, trust: TrustConfig) {
    config.plugins.insecure_registries = vec![address];
    config.plugins.trust = trust;
    if let Some(breach) = config.plugins.slots.get_mut("breach-check") {
        breach.require_signature = Some(false);
    }
}

fn signature_error(result: Result<ReloadOutcome, LoadError>) -> SignatureError {
    match result {
        Err(LoadError::Distribution { source, .. }) => match *source {
            SourceError::Signature(error) => error,
            other => panic!("expected a signature refusal, got {other:?}"),
        },
        other => panic!("expected a signature refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_component_pulled_by_digest_serves_and_the_record_names_digest_and_key() {
    let registry = TestRegistry::start().await.expect("registry");
    let key = signing_key();
    let bytes = bundled_component();
    let pinned = registry
        .push(
            "plugins/password-policy",
            "1",
            &bytes,
            &[sign(&key, &bytes)],
        )
        .await
        .expect("push");
    let dir = PluginDir::new().expect("dir");
    let mut config = oci_config(&dir, &registry, &pinned, None);
    config.trust = trust(&[("release", &key)], None);
    let host = PolicyHost::start(&config).await.expect("host");

    let (version, digest, verified_by) = serving(&host).await;
    assert_eq!(version, password_policy::PLUGIN_VERSION);
    assert!(pinned.ends_with(&digest), "{pinned} pins {digest}");
    assert_eq!(verified_by, vec!["release".to_owned()]);
    let status = host.catalog().status();
    let slot = status.iter().find(|slot| slot.name == SLOT).expect("slot");
    assert_eq!(slot.source.source, pinned);
    assert_eq!(slot.source.origin, Some(Origin::Registry));
    let record = serde_json::to_value(
        host.evaluate_password(SLOT, &password("correct horse battery staple"))
            .await,
    )
    .expect("json");
    assert_eq!(record["plugin"]["provenance"]["digest"], digest.as_str());
    assert_eq!(record["plugin"]["provenance"]["verified_by"][0], "release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_candidates_are_refused_each_with_its_own_error_while_the_old_version_serves() {
    let registry = TestRegistry::start().await.expect("registry");
    let release = signing_key();
    let stranger = signing_key();
    let bytes = bundled_component();
    let next = next_component();
    let signed = registry
        .push("plugins/pp", "stable", &bytes, &[sign(&release, &bytes)])
        .await
        .expect("push");
    let dir = PluginDir::new().expect("dir");
    // The slot follows a tag, resolved to a digest on every load.
    let mut config = oci_config(
        &dir,
        &registry,
        &registry.reference("plugins/pp:stable"),
        Some(PullPolicy::Always),
    );
    config.trust = trust(&[("release", &release)], None);
    let host = PolicyHost::start(&config).await.expect("host");
    let (_, good_digest, _) = serving(&host).await;
    assert!(signed.ends_with(&good_digest));
    let catalog = host.catalog();
    let set = |reference: String| async move {
        let source = catalog
            .parse_source(SLOT, &reference, None)
            .expect("a valid reference");
        catalog.set_source(SLOT, source).await
    };

    // The tag moves to an unsigned digest.
    registry
        .push("plugins/pp", "stable", &next, &[])
        .await
        .expect("push");
    let error = signature_error(host.catalog().reload(SLOT).await);
    assert!(matches!(error, SignatureError::Unsigned { .. }), "{error}");
    assert!(error.to_string().contains(".sig"), "{error}");

    // Tampered bytes: the release key signed other bytes than those pushed.
    let tampered = registry
        .push("plugins/pp", "tampered", &next, &[sign(&release, &bytes)])
        .await
        .expect("push");
    let error = signature_error(set(tampered).await);
    assert!(matches!(error, SignatureError::Mismatch { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("release (signature does not match)"),
        "{error}"
    );

    // Signed, but by a key this host does not trust.
    let unknown = registry
        .push("plugins/pp", "stranger", &next, &[sign(&stranger, &next)])
        .await
        .expect("push");
    let error = signature_error(set(unknown).await);
    assert!(
        matches!(error, SignatureError::UntrustedKey { .. }),
        "{error}"
    );

    // Through all of it, the signed version kept serving, and each error is in the status.
    let (version, digest, _) = serving(&host).await;
    assert_eq!(version, password_policy::PLUGIN_VERSION);
    assert_eq!(digest, good_digest);
    let status = host.catalog().status();
    let slot = status.iter().find(|slot| slot.name == SLOT).expect("slot");
    assert!(
        slot.last_error
            .as_deref()
            .is_some_and(|error| error.contains("does not trust"))
    );
    assert_eq!(slot.source.source, registry.reference("plugins/pp:stable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_signature_when_two_are_required_is_refused() {
    let registry = TestRegistry::start().await.expect("registry");
    let (a, b) = (signing_key(), signing_key());
    let bytes = bundled_component();
    let next = next_component();
    let both = registry
        .push(
            "plugins/pp",
            "1",
            &bytes,
            &[sign(&a, &bytes), sign(&b, &bytes)],
        )
        .await
        .expect("push");
    let dir = PluginDir::new().expect("dir");
    let mut config = oci_config(&dir, &registry, &both, None);
    config.trust = trust(&[("alice", &a), ("bob", &b)], Some(2));
    let host = PolicyHost::start(&config).await.expect("host");
    let (_, digest, verified_by) = serving(&host).await;
    assert_eq!(verified_by, vec!["alice".to_owned(), "bob".to_owned()]);

    let one = registry
        .push("plugins/pp", "2", &next, &[sign(&a, &next)])
        .await
        .expect("push");
    let source = host
        .catalog()
        .parse_source(SLOT, &one, None)
        .expect("valid");
    let error = signature_error(host.catalog().set_source(SLOT, source).await);
    assert!(
        matches!(error, SignatureError::BelowThreshold { threshold: 2, .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("verified by: alice; not verified by: bob (no signature)"),
        "{error}"
    );
    assert_eq!(serving(&host).await.1, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_file_serves_and_a_tampered_file_is_refused() {
    let key = signing_key();
    let dir = PluginDir::new().expect("dir");
    let bytes = bundled_component();
    std::fs::write(
        dir.path().join("password-policy.wasm.minisig"),
        sign(&key, &bytes),
    )
    .expect("signature");
    dir.publish_bytes(SLOT, &bytes).expect("publish");
    let mut config = dir.config();
    config.watch = false;
    config.trust = trust(&[("release", &key)], None);
    let host = PolicyHost::start(&config).await.expect("host");
    let (_, digest, verified_by) = serving(&host).await;
    assert_eq!(verified_by, vec!["release".to_owned()]);

    // New bytes, old signature.
    dir.publish(SLOT, Path::new(components::PASSWORD_POLICY_NEXT))
        .expect("publish");
    let error = signature_error(host.catalog().reload(SLOT).await);
    assert!(matches!(error, SignatureError::Mismatch { .. }), "{error}");
    // No signature file at all.
    std::fs::remove_file(dir.path().join("password-policy.wasm.minisig")).expect("remove");
    let error = signature_error(host.catalog().reload(SLOT).await);
    assert!(matches!(error, SignatureError::Unsigned { .. }), "{error}");
    assert_eq!(serving(&host).await.1, digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_down_at_start_serves_the_cached_digest_and_says_so() {
    let mut registry = TestRegistry::start().await.expect("registry");
    let (key, pinned) = push_signed_bundled(&registry).await;
    let dir = PluginDir::new().expect("dir");
    let mut config = oci_config(&dir, &registry, &pinned, Some(PullPolicy::Always));
    config.trust = trust(&[("release", &key)], None);
    let first = PolicyHost::start(&config).await.expect("host");
    let (_, digest, _) = serving(&first).await;
    drop(first);

    registry.stop();
    let restarted = PolicyHost::start(&config).await.expect("host");
    assert_eq!(serving(&restarted).await.1, digest);
    let status = restarted.catalog().status();
    let slot = status.iter().find(|slot| slot.name == SLOT).expect("slot");
    match &slot.source.origin {
        Some(Origin::Cache { note }) => {
            assert!(note.contains("registry"), "{note}");
            assert!(note.contains(&digest), "{note}");
        }
        other => panic!("expected the cached copy, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_down_and_nothing_cached_applies_the_fail_policy_and_readyz_names_the_slot() {
    let mut registry = TestRegistry::start().await.expect("registry");
    let (key, pinned) = push_signed_bundled(&registry).await;
    registry.stop();
    let hibp = harness::hibp::HibpServer::start(&[]).await;
    let address = registry.address();
    let service = TestService::start(&hibp.server.url(), None, |config| {
        trust_registry(config, address, trust(&[("release", &key)], None));
        config
            .plugins
            .slots
            .entry(SLOT.to_owned())
            .or_default()
            .source = Some(pinned.clone());
    })
    .await
    .expect("service");
    let record = service
        .state
        .host
        .evaluate_password(SLOT, &password("correct horse battery staple"))
        .await;
    assert!(record.fail_policy_applied.is_some());
    assert_eq!(record.decision.verdict, policy_host::Verdict::Deny);
    let response = reqwest::get(service.url("/readyz")).await.expect("readyz");
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["missing"], serde_json::json!([SLOT]), "{body}");
}

/// Posts `source` for the password-policy slot and waits until `digest` serves; returns the
/// time from the POST to serving.
async fn post_source_and_wait(service: &TestService, source: &str, digest: &str) -> Duration {
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let response = client
        .post(service.url("/admin/plugins/password-policy/source"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({ "source": source }))
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 202, "{:?}", response.text().await);
    let served = wait_until(Duration::from_mins(1), || async {
        service
            .state
            .host
            .catalog()
            .slot(SLOT)
            .and_then(policy_host::catalog::Slot::current)
            .and_then(|plugin| plugin.identity.provenance.clone())
            .is_some_and(|provenance| provenance.digest == digest)
    })
    .await;
    assert!(served.is_some(), "{digest} did not serve within 60 s");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_endpoint_sets_a_source_off_the_request_path_and_the_list_shows_it() {
    let registry = TestRegistry::start().await.expect("registry");
    let (key, pinned) = push_signed_bundled(&registry).await;
    let digest = pinned.rsplit('@').next().expect("digest").to_owned();
    let hibp = harness::hibp::HibpServer::start(&[]).await;
    let compile_cache = tempfile::tempdir().expect("dir");
    let hibp_url = hibp.server.url();
    let start_service = |cache: &Path| {
        let address = registry.address();
        let trust = trust(&[("release", &key)], None);
        let cache = cache.to_path_buf();
        TestService::start(&hibp_url, None, move |config| {
            trust_registry(config, address, trust);
            config.plugins.cache_dir = Some(cache);
        })
    };

    // A malformed reference and a tag without a pull policy are refused on the request.
    let service = start_service(compile_cache.path()).await.expect("service");
    let client = reqwest::Client::new();
    for bad in ["https://example.com/x", "oci://127.0.0.1:1/pp:stable"] {
        let response = client
            .post(service.url("/admin/plugins/password-policy/source"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "source": bad }))
            .send()
            .await
            .expect("post");
        assert_eq!(response.status(), 400, "{bad}");
    }
    let cold = post_source_and_wait(&service, &pinned, &digest).await;
    let list: serde_json::Value = client
        .get(service.url("/admin/plugins"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    let slot = list["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|plugin| plugin["name"] == SLOT))
        .expect("the slot")
        .clone();
    assert_eq!(slot["source"], pinned.as_str(), "{slot}");
    assert_eq!(slot["digest"], digest.as_str(), "{slot}");
    assert_eq!(
        slot["verified_by"],
        serde_json::json!(["release"]),
        "{slot}"
    );
    drop(service);

    // Same compile cache, empty pull cache: pull + verify + load the compiled artifact.
    let _ = std::fs::remove_dir_all(compile_cache.path().join("pulled"));
    let service = start_service(compile_cache.path()).await.expect("service");
    let warm = post_source_and_wait(&service, &pinned, &digest).await;
    for (bench, took) in [
        ("plugin-source/password-policy/empty-cache", cold),
        ("plugin-source/password-policy/warm-compile-cache", warm),
    ] {
        println!(
            "{}",
            serde_json::json!({ "bench": bench, "ms": (took.as_secs_f64() * 1e4).round() / 10.0 })
        );
    }
}

const REGISTRY_USER: &str = "puller";
const PASSWORD_SECRET: &str = "registry-password";

/// `oci_config` for a registry that wants a login: the password is the file secret
/// `registry-password` at `password_file`, the user name `REGISTRY_USER`.
fn login_config(
    dir: &PluginDir,
    registry: &TestRegistry,
    source: &str,
    password_file: &Path,
) -> HostConfig {
    let mut config = oci_config(dir, registry, source, Some(PullPolicy::Always));
    config.egress.secrets.insert(
        PASSWORD_SECRET.to_owned(),
        policy_host::egress::config::SecretSource::File(password_file.to_owned()),
    );
    config.registry_credentials.insert(
        registry.address(),
        policy_host::source::RegistryCredentialConfig {
            username: REGISTRY_USER.to_owned(),
            password_secret: PASSWORD_SECRET.to_owned(),
        },
    );
    config
}

/// Replaces `path` atomically (a new file renamed over it), as Kubernetes and Vault Agent do.
fn write_atomically(path: &Path, value: &str) {
    let fresh = path.with_extension("tmp");
    std::fs::write(&fresh, value).expect("write");
    std::fs::rename(&fresh, path).expect("rename");
}

/// Writes `password` to `password_file`, then starts a host in a fresh directory that pulls
/// `source` from `registry` logging in with that file's password.
async fn start_with_registry_password(
    registry: &TestRegistry,
    source: &str,
    password_file: &Path,
    password: &str,
) -> (PluginDir, PolicyHost) {
    std::fs::write(password_file, password).expect("write");
    let dir = PluginDir::new().expect("dir");
    let host = PolicyHost::start(&login_config(&dir, registry, source, password_file))
        .await
        .expect("host");
    (dir, host)
}

fn slot_status(host: &PolicyHost) -> policy_host::catalog::SlotStatus {
    host.catalog()
        .status()
        .into_iter()
        .find(|slot| slot.name == SLOT)
        .expect("slot")
}

/// The pull error behind a refused `set_source`.
fn pull_error(result: Result<ReloadOutcome, LoadError>) -> policy_host::source::oci::PullError {
    match result {
        Err(LoadError::Distribution { source, .. }) => match *source {
            SourceError::Pull { error, .. } => error,
            other => panic!("expected a pull failure, got {other:?}"),
        },
        other => panic!("expected a pull failure, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_with_a_login_refuses_no_or_wrong_credentials_naming_itself() {
    let registry = TestRegistry::start_with_login(REGISTRY_USER, "right-pass")
        .await
        .expect("registry");
    let pinned = registry
        .push("plugins/pp", "1", &bundled_component(), &[])
        .await
        .expect("push");
    let secrets = tempfile::tempdir().expect("dir");
    let password_file = secrets.path().join("password");

    // No credentials configured for the registry: nothing serves, the error says why.
    let dir = PluginDir::new().expect("dir");
    let anonymous = PolicyHost::start(&oci_config(
        &dir,
        &registry,
        &pinned,
        Some(PullPolicy::Always),
    ))
    .await
    .expect("host");
    let status = slot_status(&anonymous);
    assert!(status.current.is_none());
    let error = status.last_error.expect("an error");
    assert!(
        error.contains(&registry.address())
            && error.contains("unauthorized")
            && error.contains("no credentials are configured"),
        "{error}"
    );
    drop(anonymous);

    // A wrong password: refused, and the error says the configured credentials were refused.
    let (_wrong_dir, wrong) =
        start_with_registry_password(&registry, &pinned, &password_file, "wrong-pass\n").await;
    let status = slot_status(&wrong);
    assert!(status.current.is_none());
    let error = status.last_error.expect("an error");
    assert!(
        error.contains(&registry.address())
            && error.contains("the configured credentials were not accepted")
            && !error.contains("wrong-pass"),
        "{error}"
    );
    drop(wrong);

    // The right one: it serves, pulled from the registry.
    let (_right_dir, right) =
        start_with_registry_password(&registry, &pinned, &password_file, "right-pass\n").await;
    let (version, digest, _) = serving(&right).await;
    assert_eq!(version, password_policy::PLUGIN_VERSION);
    assert!(pinned.ends_with(&digest));
    assert_eq!(slot_status(&right).source.origin, Some(Origin::Registry));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_registry_password_is_used_from_the_next_pull_without_a_restart() {
    let mut registry = TestRegistry::start_with_login(REGISTRY_USER, "first-pass")
        .await
        .expect("registry");
    let first = registry
        .push("plugins/pp", "1", &bundled_component(), &[])
        .await
        .expect("push");
    let second = registry
        .push("plugins/pp", "2", &next_component(), &[])
        .await
        .expect("push");
    let secrets = tempfile::tempdir().expect("dir");
    let password_file = secrets.path().join("password");
    write_atomically(&password_file, "first-pass\n");
    let dir = PluginDir::new().expect("dir");
    let host = PolicyHost::start(&login_config(&dir, &registry, &first, &password_file))
        .await
        .expect("host");
    let (_, first_digest, _) = serving(&host).await;
    assert!(first.ends_with(&first_digest));
    let catalog = host.catalog();
    let set = |reference: &str| {
        let source = catalog
            .parse_source(SLOT, reference, Some(PullPolicy::Always))
            .expect("a valid reference");
        catalog.set_source(SLOT, source)
    };

    // The registry's password changes first: the old one in the file is refused, by name of
    // the registry, and the serving version stays.
    registry
        .rotate_password("second-pass")
        .await
        .expect("rotate");
    let error = pull_error(set(&second).await);
    let text = error.to_string();
    assert!(
        matches!(
            error,
            policy_host::source::oci::PullError::Unauthorized {
                credentials: true,
                ..
            }
        ) && text.contains(&registry.address()),
        "{text}"
    );
    assert_eq!(serving(&host).await.1, first_digest);

    // The file follows (atomically): the next pull uses it. No restart.
    write_atomically(&password_file, "second-pass\n");
    assert!(matches!(
        set(&second).await.expect("pulled with the new password"),
        ReloadOutcome::Swapped { .. }
    ));
    let (version, second_digest, _) = serving(&host).await;
    assert_eq!(
        version,
        components::NEXT_VERSION,
        "the next component serves"
    );
    assert!(second.ends_with(&second_digest));
    assert_eq!(slot_status(&host).source.origin, Some(Origin::Registry));

    // A file caught half-written (truncated, not yet rewritten) is not used: the pull goes
    // out with the password in force and succeeds.
    std::fs::File::create(&password_file).expect("truncate");
    host.catalog().reload(SLOT).await.expect("reload");
    assert_eq!(
        slot_status(&host).source.origin,
        Some(Origin::Registry),
        "pulled with the value in force, not an empty one"
    );

    // Rotated again, the file written in place (not atomically): used once complete.
    registry
        .rotate_password("third-pass")
        .await
        .expect("rotate");
    std::fs::write(&password_file, "third-pass").expect("write");
    set(&first).await.expect("pulled with the third password");
    assert_eq!(serving(&host).await.1, first_digest);
    assert_eq!(slot_status(&host).source.origin, Some(Origin::Registry));
}
