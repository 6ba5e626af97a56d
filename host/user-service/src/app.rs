//! Wiring: state, router, middleware, and start-up (database, bundled plugins, policy host).

use crate::{
    accounts, admin_outbound, admin_plugin_source, api,
    config::ServiceConfig,
    openapi,
    outbound::{InternalClient, discovery::Discovery, token::TokenSource},
    outbox::Relay,
    problem,
    request_limits::HeaderLimits,
    security_policy::{PolicySlots, SecurityPolicyService},
    server, sessions,
    store::Store,
    throttle::LoginThrottle,
};
use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    middleware::{self, Next},
    response::Response,
    routing::{delete, get, post},
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use policy_host::{PolicyHost, egress::EgressGateway};
use std::{
    sync::{Arc, OnceLock},
    time::Instant,
};
use tokio::{sync::Notify, task::JoinHandle};
use tower_http::catch_panic::CatchPanicLayer;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ServiceConfig>,
    pub host: Arc<PolicyHost>,
    /// The checks of a new password, run by `host`'s plugins (the benchmark's native mode
    /// swaps in [`crate::password_checks::PasswordChecks::native`]).
    pub checks: crate::password_checks::PasswordChecks,
    pub store: Store,
    /// Login throttles, counted in the database (shared by every replica).
    pub throttle: LoginThrottle,
    pub metrics: PrometheusHandle,
    /// Calls to internal services (Notification, Configuration) by logical name.
    pub internal: Arc<InternalClient>,
    /// Security policies from the Configuration Service.
    pub security: Arc<SecurityPolicyService>,
    /// Wakes the outbox relay after a commit.
    pub outbox_waker: Arc<Notify>,
    /// The relay and refresh tasks, stopped when the last clone of the state goes.
    _background: Arc<BackgroundTasks>,
}

/// Background tasks owned by one service instance.
struct BackgroundTasks(Vec<JoinHandle<()>>);

impl Drop for BackgroundTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

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
    config.check_service_references()?;
    let store = Store::connect(&config.database_url).await?;
    if config.install_bundled_plugins {
        for plugin in bundled_plugins::ALL {
            if plugin.install_if_missing(&config.plugins.dir)? {
                tracing::info!(plugin = plugin.name, dir = %config.plugins.dir.display(), "installed bundled plugin");
            }
        }
    }
    let host = PolicyHost::start(&config.plugins).await?;
    for slot in host.catalog().status() {
        match (&slot.current, &slot.last_error) {
            (Some(current), _) => {
                tracing::info!(plugin = %slot.name, version = %current.identity.version, sha256 = %current.identity.sha256, "plugin serving")
            }
            (None, Some(error)) => {
                tracing::error!(plugin = %slot.name, %error, "plugin not loaded")
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
    let host = Arc::new(host);
    Ok(AppState {
        throttle: LoginThrottle::new(store.clone(), &config.flows),
        config: Arc::new(config),
        checks: crate::password_checks::PasswordChecks::plugins(host.clone()),
        host,
        store,
        metrics: metrics_handle(),
        internal,
        security,
        outbox_waker,
        _background: Arc::new(BackgroundTasks(tasks)),
    })
}

/// The router with every route, the body and header limits, problem documents for every
/// error response, and request metrics.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let header_limits = HeaderLimits {
        max_headers: state.config.http.max_headers,
        max_header_bytes: state.config.http.max_header_bytes,
    };
    Router::new()
        .route("/v1/users", post(api::register))
        .route(
            "/v1/sessions",
            post(api::login)
                .get(sessions::list)
                .delete(sessions::revoke_others),
        )
        .route(
            "/v1/sessions/current",
            get(sessions::whoami).delete(sessions::logout),
        )
        .route(
            "/v1/users/me",
            get(accounts::me)
                .patch(accounts::patch_me)
                .delete(accounts::delete_me),
        )
        .route("/v1/users/{id}", get(accounts::by_id))
        .route(
            "/v1/email/verifications",
            post(crate::email_verification::verify),
        )
        .route(
            "/v1/email/verification-requests",
            post(crate::email_verification::resend),
        )
        .route("/v1/password/change", post(api::change_password))
        .route("/v1/password/reset-requests", post(api::request_reset))
        .route("/v1/password/resets", post(api::complete_reset))
        .route("/v1/password/check", post(api::check_password))
        .route(
            "/admin/users/{id}/sessions",
            delete(sessions::admin_revoke_all),
        )
        .route("/admin/plugins", get(api::list_plugins))
        .route("/admin/plugins/{name}/reload", post(api::reload_plugin))
        .route("/admin/plugins/{name}/rollback", post(api::rollback_plugin))
        .route(
            "/admin/plugins/{name}/source",
            post(admin_plugin_source::set_source),
        )
        .route("/admin/outbox", get(admin_outbound::outbox_status))
        .route(
            "/admin/outbox/dead-letters",
            get(admin_outbound::dead_letters),
        )
        .route(
            "/admin/outbox/dead-letters/replay",
            post(admin_outbound::replay_all_dead_letters),
        )
        .route(
            "/admin/outbox/dead-letters/{id}/replay",
            post(admin_outbound::replay_dead_letter),
        )
        .route(
            "/admin/security-policies",
            get(admin_outbound::security_policies),
        )
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(openapi::document))
        // After every route: it applies to the method routers registered so far.
        .method_not_allowed_fallback(problem::method_not_allowed)
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(move |request, next| {
            header_limits.enforce(request, next)
        }))
        .layer(middleware::from_fn(problem::ensure_problem))
        .layer(CatchPanicLayer::custom(problem::from_panic))
        .layer(middleware::from_fn(record_request))
        .layer(middleware::from_fn(crate::trace_context::trace_request))
        .with_state(state)
}

/// Counts requests and their latency by route and status.
async fn record_request(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Serves on `listener` until `shutdown` resolves, with `[http]`'s limits (see [`server`]).
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let http = state.config.http.clone();
    server::serve(router(state), listener, &http, shutdown).await
}
