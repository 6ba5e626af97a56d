//! `/admin/security-policies`: the policy in force, where it came from, the last error.

use crate::{http::extract::Admin, state::AppState};
use axum::{
    Json,
    extract::State,
    response::{IntoResponse, Response},
};

/// `GET /admin/security-policies`
pub async fn security_policies(State(state): State<AppState>, _: Admin) -> Response {
    Json(state.security.status()).into_response()
}
