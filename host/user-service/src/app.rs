//! Start-up and serving: the database, the bundled plugins, the policy host, the internal
//! clients and the background tasks, wired into an [`AppState`]; then the HTTP layer on a
//! listener.

use crate::{
    config::ServiceConfig,
    http,
    outbound::{InternalClient, discovery::Discovery, token::TokenSource},
    outbox::Relay,
    security_policy::{PolicySlots, SecurityPolicyService},
    server,
    state::{AppState, BackgroundTasks},
    store::Store,
    throttle::LoginThrottle,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use policy_host::{PolicyHost, egress::EgressGateway};
use std::sync::{Arc, OnceLock};

/// The process-wide Prometheus recorder (installed once, shared by every app in the process).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (embedding); then ours just stays empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Opens the database, installs missing bundled plugins, starts the policy host.
pub async fn start(config: ServiceConfig) -> anyhow::Result<AppState> {
    crate::malloc_tuning::tune();
    // First: what start-up counts (plugin loads, the rollout catch-up) must be recorded too.
    let metrics = metrics_handle();
    config.check_service_references()?;
    for deprecation in config.flows.deprecations() {
        tracing::warn!("{deprecation}");
    }
    let store = Store::connect(&config.database_url).await?;
    if config.install_bundled_plugins {
        for plugin in bundled_plugins::ALL {
            if plugin.install_if_missing(&config.plugins.dir)? {
                tracing::info!(
                    plugin = plugin.name,
                    dir = %config.plugins.dir.display(),
                    "installed bundled plugin"
                );
            }
        }
    }
    let host = PolicyHost::start(&config.plugins).await?;
    for slot in host.catalog().status() {
        match (&slot.current, &slot.last_error) {
            (Some(current), _) => {
                tracing::info!(
                    plugin = %slot.name,
                    version = %current.identity.version,
                    sha256 = %current.identity.sha256,
                    "plugin serving"
                );
            }
            (None, Some(error)) => {
                tracing::error!(plugin = %slot.name, %error, "plugin not loaded");
            }
            (None, None) => tracing::debug!(plugin = %slot.name, "no plugin file"),
        }
    }
    let gateway = Arc::new(
        EgressGateway::new(config.outbound.clone())
            .map_err(|error| anyhow::anyhow!("[outbound]: {error}"))?,
    );
    let discovery = Discovery::new(&config.services)?;
    let auth = config
        .service_auth
        .clone()
        .map(|auth| TokenSource::new(auth, gateway.clone(), &config.outbound.defaults))
        .transpose()?;
    // The gateway loaded these already; the client keeps the values to scrub them from errors.
    let outbound_secrets =
        policy_host::egress::secrets::SecretStore::load(&config.outbound.secrets)
            .map_err(|error| anyhow::anyhow!("[outbound]: {error}"))?;
    let secret_values = config
        .outbound
        .secrets
        .keys()
        .filter_map(|name| outbound_secrets.value(name).map(|value| value.to_string()));
    let internal =
        Arc::new(InternalClient::new(gateway, discovery, auth).with_secret_values(secret_values));
    let security = SecurityPolicyService::start(
        config.security_policies.clone(),
        internal.clone(),
        host.catalog().clone(),
        PolicySlots {
            password_policy: config.flows.password_policy.clone(),
            breach_check: config.flows.breach_check.clone(),
            captcha: config.flows.captcha.clone(),
        },
    )
    .await;
    let relay = Arc::new(Relay::new(
        store.clone(),
        config.events.clone(),
        internal.clone(),
    ));
    let outbox_waker = relay.waker();
    let mut tasks = Vec::new();
    if config.events.relay {
        relay.prepare(std::time::Duration::from_secs(5)).await?;
        tasks.push(tokio::spawn(relay.run()));
    }
    tasks.extend(security.refresh_task());
    // Catch up with the desired plugin state before serving, then follow it.
    let host = Arc::new(host);
    host.catalog().staging().set_decision_log(
        config
            .rollout
            .decision_log()
            .map_err(|error| anyhow::anyhow!("[rollout] decision-log: {error}"))?,
    );
    let artifacts = Arc::new(crate::rollout::artifacts::SharedArtifacts::new(
        store.clone(),
        host.catalog().engine().clone(),
        crate::rollout::artifacts::load_key(config.rollout.artifact_key.as_ref())?,
    ));
    let rollout = Arc::new(crate::rollout::sync::RolloutSync::new(
        store.clone(),
        host.catalog().clone(),
        config.rollout.replica_id(config.listen.port()),
        config.rollout.clone(),
        artifacts,
    ));
    if config.rollout.enabled {
        rollout.tick().await;
        tasks.extend(rollout.clone().spawn(&config.database_url));
    }
    Ok(AppState {
        rollout,
        checks: crate::password_checks::PasswordChecks::plugins(host.clone()),
        throttle: LoginThrottle::new(store.clone(), &config.flows),
        config: Arc::new(config),
        host,
        store,
        metrics,
        internal,
        security,
        outbox_waker,
        _background: Arc::new(BackgroundTasks(tasks)),
    })
}

/// Serves on `listener` until `shutdown` resolves, with `[http]`'s limits (see [`server`]).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let limits = state.config.http.clone();
    server::serve(http::router(state), listener, &limits, shutdown).await
}

/// What the `user-service` binary runs once its configuration is loaded and logging is set
/// up: [`start`], listen on `listen`, [`serve`] until `shutdown` resolves.
pub async fn run(
    config: ServiceConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listen = config.listen;
    let state = start(config).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {listen}: {error}"))?;
    tracing::info!(address = %listener.local_addr()?, "user service listening");
    serve(state, listener, shutdown).await
}
