//! The account endpoints: `GET /v1/users/me`, `GET /v1/users/{id}` (self or admin),
//! `PATCH /v1/users/me` (display name; email with the current password) and `DELETE
//! /v1/users/me` (with the current password).

use crate::{
    api::{
        ApiJson, ClientAddress, MAX_DISPLAY_NAME_BYTES, RequestMetadata, authorize,
        canonical_email, event, invalid_credentials, throttled_attempt,
    },
    app::AppState,
    email_verification::{self, Purpose},
    flows, passwords,
    problem::Problem,
    sessions::{Authenticated, authenticate},
    store::User,
};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use std::net::IpAddr;

/// A user as clients see it: never a password hash or a counter.
pub async fn user_json(state: &AppState, user: &User) -> Result<Value, Problem> {
    let details = state
        .store
        .account_details(&user.id)
        .await?
        .ok_or_else(|| Problem::internal(format!("user {} vanished", user.id)))?;
    Ok(json!({
        "id": user.id,
        "email": user.email,
        "email_display": user.email_display,
        "display_name": user.display_name,
        "email_verified": details.email_verified_at.is_some(),
        "pending_email": details.pending_email,
        "created_at": details.created_at,
    }))
}

/// Proves `password` is `user`'s current one. Counted and throttled like a login attempt (it is
/// one): wrong passwords lock the account as failed logins do.
pub async fn prove_password(
    state: &AppState,
    user: &User,
    password: &str,
    client: IpAddr,
    captcha_token: Option<&str>,
) -> Result<(), Problem> {
    if password.len() > flows::MAX_PASSWORD_BYTES {
        return Err(invalid_credentials());
    }
    let attempt = throttled_attempt(state, &user.email, client, captcha_token, "login").await?;
    let matches = passwords::verify(
        password.to_owned(),
        attempt.user.as_ref().map(|user| user.password_hash.clone()),
    )
    .await
    .map_err(Problem::internal)?;
    if !matches
        || attempt
            .user
            .as_ref()
            .is_none_or(|found| found.id != user.id)
    {
        return Err(invalid_credentials());
    }
    state.throttle.succeeded(&attempt).await?;
    Ok(())
}

/// `GET /v1/users/me`
pub async fn me(
    State(state): State<AppState>,
    current: Authenticated,
) -> Result<Response, Problem> {
    Ok(Json(user_json(&state, &current.user).await?).into_response())
}

fn no_such_user() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
}

/// `GET /v1/users/{id}`: the user itself (its session) or an admin (the admin token). Anyone
/// else gets the same 404 as for an id that does not exist.
pub async fn by_id(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let admin = state.config.admin_token.is_some() && authorize(&state, &headers).is_ok();
    if !admin {
        let current = authenticate(&state, &headers).await?;
        if current.user.id != id {
            return Err(no_such_user());
        }
    }
    let user = state
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(no_such_user)?;
    Ok(Json(user_json(&state, &user).await?).into_response())
}

/// Absent: `None`; `null`: `Some(None)`; a value: `Some(Some(value))`.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The body of `PATCH /v1/users/me`.
pub struct PatchRequest {
    /// Absent: unchanged; `null` or blank: removed.
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    /// A new address: verified before it replaces the current one.
    email: Option<String>,
    /// Required with `email`.
    current_password: Option<String>,
    captcha_token: Option<String>,
}

/// `PATCH /v1/users/me`
pub async fn patch_me(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    metadata: RequestMetadata,
    current: Authenticated,
    ApiJson(body): ApiJson<PatchRequest>,
) -> Result<Response, Problem> {
    let mut user = current.user;
    let display_name = body.display_name.map(|name| {
        name.map(|name| name.trim().to_owned())
            .filter(|name| !name.is_empty())
    });
    if let Some(Some(name)) = &display_name
        && name.len() > MAX_DISPLAY_NAME_BYTES
    {
        return Err(Problem::bad_request(
            "invalid-display-name",
            "The display name is longer than 200 bytes.",
        ));
    }
    let new_email = body.email.as_deref().map(canonical_email).transpose()?;
    if let Some(new_email) = &new_email
        && new_email.canonical != user.email
    {
        let Some(password) = body.current_password.as_deref() else {
            return Err(Problem::bad_request(
                "invalid-body",
                "Changing the email needs `current_password`.",
            ));
        };
        prove_password(
            &state,
            &user,
            password,
            client,
            body.captcha_token.as_deref(),
        )
        .await?;
        if state
            .store
            .user_by_email(&new_email.canonical)
            .await?
            .is_some()
        {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "email-taken",
                "An account with this email already exists",
            ));
        }
        let (verification, requested) = email_verification::prepare(
            &state,
            &user,
            &new_email.canonical,
            &new_email.display,
            Purpose::EmailChange,
            &metadata,
        )?;
        email_verification::send(&state, &verification, &requested).await?;
    }
    if let Some(name) = display_name {
        state
            .store
            .set_display_name(&user.id, name.as_deref())
            .await?;
        user.display_name = name;
    }
    Ok(Json(user_json(&state, &user).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The body of `DELETE /v1/users/me`.
pub struct DeleteRequest {
    current_password: String,
    captcha_token: Option<String>,
}

/// `DELETE /v1/users/me`: the account, its sessions, reset tokens and verifications go; one
/// `UserDeletedEventV1` says so.
pub async fn delete_me(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    metadata: RequestMetadata,
    current: Authenticated,
    ApiJson(body): ApiJson<DeleteRequest>,
) -> Result<Response, Problem> {
    let user = current.user;
    prove_password(
        &state,
        &user,
        &body.current_password,
        client,
        body.captcha_token.as_deref(),
    )
    .await?;
    let deleted = event(
        "UserDeletedEventV1",
        &user.id,
        json!({ "userId": user.id, "email": user.email }),
        &metadata,
    )?;
    if !state.store.delete_user(&user.id, &deleted).await? {
        return Err(no_such_user());
    }
    state.outbox_waker.notify_one();
    metrics::counter!("users_deleted_total").increment(1);
    Ok(StatusCode::NO_CONTENT.into_response())
}
