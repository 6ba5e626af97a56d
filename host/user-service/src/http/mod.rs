//! The HTTP layer: the router, its middleware, and one module per resource. Handlers extract
//! a request into the plain inputs of [`crate::domain`] and shape what comes back into a
//! response; they hold no business rules. Nothing below this layer imports it.

pub mod admin;
pub mod email;
pub mod extract;
pub mod limits;
pub mod openapi;
pub mod passwords;
pub mod probes;
pub mod problem;
pub mod sessions;
pub mod users;

use crate::state::AppState;
use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request},
    middleware::{self, Next},
    response::Response,
    routing::{delete, get, post},
};
use limits::HeaderLimits;
use std::time::Instant;
use tower_http::catch_panic::CatchPanicLayer;

/// The router with every route, the body and header limits, problem documents for every
/// error response, and request metrics.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    let header_limits = HeaderLimits {
        max_headers: state.config.http.max_headers,
        max_header_bytes: state.config.http.max_header_bytes,
    };
    Router::new()
        .route("/v1/users", post(users::register))
        .route(
            "/v1/sessions",
            post(sessions::login)
                .get(sessions::list)
                .delete(sessions::revoke_others),
        )
        .route(
            "/v1/sessions/current",
            get(sessions::whoami).delete(sessions::logout),
        )
        .route(
            "/v1/users/me",
            get(users::me)
                .patch(users::patch_me)
                .delete(users::delete_me),
        )
        .route("/v1/users/{id}", get(users::by_id))
        .route(
            "/v1/email/verifications",
            post(email::verify),
        )
        .route(
            "/v1/email/verification-requests",
            post(email::resend),
        )
        .route("/v1/password/change", post(passwords::change))
        .route("/v1/password/reset-requests", post(passwords::request_reset))
        .route("/v1/password/resets", post(passwords::complete_reset))
        .route("/v1/password/check", post(passwords::check))
        .route(
            "/admin/users/{id}/sessions",
            delete(admin::users::revoke_sessions),
        )
        .route("/admin/plugins", get(admin::plugins::list))
        .route("/admin/plugins/{name}/reload", post(admin::plugins::reload))
        .route("/admin/plugins/{name}/rollback", post(admin::plugins::rollback))
        .route(
            "/admin/plugins/{name}/source",
            post(admin::plugins::set_source),
        )
        .route("/admin/outbox", get(admin::outbox::status))
        .route(
            "/admin/outbox/dead-letters",
            get(admin::outbox::dead_letters),
        )
        .route(
            "/admin/outbox/dead-letters/replay",
            post(admin::outbox::replay_all),
        )
        .route(
            "/admin/outbox/dead-letters/{id}/replay",
            post(admin::outbox::replay),
        )
        .route(
            "/admin/security-policies",
            get(admin::policies::security_policies),
        )
        .route("/healthz", get(probes::healthz))
        .route("/readyz", get(probes::readyz))
        .route("/metrics", get(probes::metrics))
        .route("/openapi.json", get(openapi::document))
        // After every route: it applies to the method routers registered so far.
        .method_not_allowed_fallback(problem::method_not_allowed)
        .fallback(problem::not_found)
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
    metrics::counter!(
        "http_requests_total",
        "route" => route.clone(),
        "method" => method,
        "status" => status
    )
    .increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
