//! `/v1/email`: verifying an address, and asking for the verification again.

use super::extract::ApiJson;
use crate::{
    domain::{RequestMetadata, email_verification},
    problem::Problem,
    state::AppState,
};
use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// `POST /v1/email/verifications`
pub async fn verify(
    State(state): State<AppState>,
    metadata: RequestMetadata,
    ApiJson(body): ApiJson<email_verification::VerifyRequest>,
) -> Result<Response, Problem> {
    Ok(Json(email_verification::verify(&state, &metadata, body).await?).into_response())
}

/// `POST /v1/email/verification-requests`: always 202 (whether the account exists, is
/// verified, or asked too recently is nobody's business).
pub async fn resend(
    State(state): State<AppState>,
    metadata: RequestMetadata,
    ApiJson(body): ApiJson<email_verification::ResendRequest>,
) -> Result<Response, Problem> {
    email_verification::resend(&state, &metadata, body).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "accepted" }))).into_response())
}
