//! Probes and metrics: `/healthz`, `/readyz`, `/metrics`.

use crate::state::AppState;
use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// `GET /healthz`
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers, the password policy is loaded, and so is every slot
/// with a registry source (`missing` names the slots that are not).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.store.ping().await;
    let mut missing = state.host.catalog().missing_sources();
    if let Some(policy) = &state.config.flows.password_policy
        && !missing.contains(policy)
        && state
            .host
            .catalog()
            .slot(policy)
            .and_then(policy_host::catalog::Slot::current)
            .is_none()
    {
        missing.push(policy.clone());
    }
    let plugins = missing.is_empty();
    let status = if database && plugins {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({ "database": database, "plugins": plugins });
    // Named only when something is missing, so a ready answer is unchanged.
    if !missing.is_empty() {
        body["missing"] = json!(missing);
    }
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    // The outbox's backlog, read at scrape time: what an alert on stuck deliveries needs.
    match state.store.undelivered_counts().await {
        Ok((pending, dead)) => {
            metrics::gauge!("outbox_pending_events").set(pending as f64);
            metrics::gauge!("outbox_dead_letters").set(dead as f64);
        }
        Err(error) => tracing::warn!(%error, "cannot count the outbox for /metrics"),
    }
    let status = state.security.status();
    metrics::gauge!("security_policy_age_seconds").set(status.fetched_at.map_or(-1.0, |fetched| {
        crate::store::now().saturating_sub(fetched as i64) as f64
    }));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
