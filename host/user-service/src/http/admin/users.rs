//! `/admin/users`: what an operator does to someone's account.

use crate::{domain::sessions, http::extract::Admin, problem::Problem, state::AppState};
use axum::{
    Json,
    extract::{Path, State},
    response::{IntoResponse, Response},
};

/// `DELETE /admin/users/{id}/sessions`: end every session of a user.
pub async fn revoke_sessions(
    State(state): State<AppState>,
    Path(user_id): Path<String>,
    _: Admin,
) -> Result<Response, Problem> {
    Ok(Json(sessions::revoke_all(&state, &user_id).await?).into_response())
}
