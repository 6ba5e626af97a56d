//! `/v1/password`: change, reset (request and completion) and the dry-run check.

use super::extract::{ApiJson, bearer};
use crate::{
    domain::{Caller, RequestMetadata, passwords, sessions},
    problem::Problem,
    state::AppState,
};
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// `POST /v1/password/change`: with a session (`Authorization: Bearer`) or, without one, the
/// `email`'s account (see [`passwords::change`]).
pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<passwords::ChangeRequest>,
) -> Result<Response, Problem> {
    let current = match bearer(&headers) {
        Some(token) => Some(sessions::authenticate(&state, Some(token)).await?),
        None => None,
    };
    passwords::change(&state, &caller, current, body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/password/reset-requests`: always 202, whether or not the account exists.
pub async fn request_reset(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<passwords::ResetRequest>,
) -> Result<Response, Problem> {
    passwords::request_reset(&state, &caller, body).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "accepted" }))).into_response())
}

/// `POST /v1/password/resets`
pub async fn complete_reset(
    State(state): State<AppState>,
    metadata: RequestMetadata,
    ApiJson(body): ApiJson<passwords::CompleteResetRequest>,
) -> Result<Response, Problem> {
    passwords::complete_reset(&state, &metadata, body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v1/password/check`: a dry run for a UI.
pub async fn check(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<passwords::CheckRequest>,
) -> Result<Response, Problem> {
    Ok(Json(passwords::check(&state, body).await).into_response())
}
