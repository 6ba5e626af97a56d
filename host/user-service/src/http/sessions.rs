//! `/v1/sessions`: log in, who am I, log out, list and revoke sessions.

use super::extract::ApiJson;
use crate::{
    domain::{
        Caller,
        login::{self, LoginRequest},
        sessions::{self, Authenticated},
    },
    problem::Problem,
    state::AppState,
};
use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};

/// `POST /v1/sessions`: log in.
pub async fn login(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, Problem> {
    Ok(Json(login::login(&state, &caller, body).await?).into_response())
}

/// `GET /v1/sessions/current`: who am I.
pub async fn whoami(
    State(state): State<AppState>,
    current: Authenticated,
) -> Result<Response, Problem> {
    Ok(Json(sessions::whoami(&state, &current).await?).into_response())
}

/// `DELETE /v1/sessions/current`: log out.
pub async fn logout(
    State(state): State<AppState>,
    current: Authenticated,
) -> Result<Response, Problem> {
    sessions::logout(&state, &current).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/sessions`: the user's live sessions (no tokens), `current` marking this one.
pub async fn list(
    State(state): State<AppState>,
    current: Authenticated,
) -> Result<Response, Problem> {
    Ok(Json(sessions::list(&state, &current).await?).into_response())
}

/// `DELETE /v1/sessions`: end every other session of the user.
pub async fn revoke_others(
    State(state): State<AppState>,
    current: Authenticated,
) -> Result<Response, Problem> {
    Ok(Json(sessions::revoke_others(&state, &current).await?).into_response())
}
