//! `/v1/users`: registration and the account.

use super::extract::{ApiJson, authorize_admin, bearer};
use crate::{
    domain::{
        Caller, accounts,
        registration::{self, RegisterRequest},
        sessions::{self, Authenticated},
    },
    problem::Problem,
    state::AppState,
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
};

/// `POST /v1/users`
pub async fn register(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Response, Problem> {
    let registered = registration::register(&state, &caller, body).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/users/{}", registered.id))],
        Json(registered.body),
    )
        .into_response())
}

/// `GET /v1/users/me`
pub async fn me(
    State(state): State<AppState>,
    current: Authenticated,
) -> Result<Response, Problem> {
    Ok(Json(accounts::user_json(&state, &current.user).await?).into_response())
}

/// `GET /v1/users/{id}`: the user itself (its session) or an admin (the admin token).
pub async fn by_id(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let admin = state.config.admin_token.is_some() && authorize_admin(&state, &headers).is_ok();
    let current = if admin {
        None
    } else {
        Some(sessions::authenticate(&state, bearer(&headers)).await?)
    };
    Ok(Json(accounts::by_id(&state, current.as_ref(), &id).await?).into_response())
}

/// `PATCH /v1/users/me`
pub async fn patch_me(
    State(state): State<AppState>,
    caller: Caller,
    current: Authenticated,
    ApiJson(body): ApiJson<accounts::PatchRequest>,
) -> Result<Response, Problem> {
    Ok(Json(accounts::patch(&state, &caller, current, body).await?).into_response())
}

/// `DELETE /v1/users/me`
pub async fn delete_me(
    State(state): State<AppState>,
    caller: Caller,
    current: Authenticated,
    ApiJson(body): ApiJson<accounts::DeleteRequest>,
) -> Result<Response, Problem> {
    accounts::delete(&state, &caller, current, body).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
