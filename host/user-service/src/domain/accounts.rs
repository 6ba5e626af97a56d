//! The account: reading it (self or admin), changing the display name or, with the current
//! password, the email address, and deleting it (with the current password).

use super::{
    Caller, canonical_email, display_name,
    email_verification::{self, Purpose},
    events::event,
    login::{invalid_credentials, proven_account},
    sessions::Authenticated,
};
use crate::{problem::Problem, state::AppState, store::User};
use http::StatusCode;
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
    match proven_account(state, &user.email, password, client, captcha_token).await? {
        Some(proven) if proven.id == user.id => Ok(()),
        _ => Err(invalid_credentials()),
    }
}

fn no_such_user() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
}

/// The account `id`, for the user itself (`current`) or an admin (`current` is `None`: the
/// caller checked the admin token). Anyone else gets the same 404 as for an id that does not
/// exist.
pub async fn by_id(
    state: &AppState,
    current: Option<&Authenticated>,
    id: &str,
) -> Result<Value, Problem> {
    if current.is_some_and(|current| current.user.id != id) {
        return Err(no_such_user());
    }
    let user = state.store.user_by_id(id).await?.ok_or_else(no_such_user)?;
    user_json(state, &user).await
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

/// Changes the display name and asks to verify a new address (which replaces the current
/// one once verified); the account as it now is.
pub async fn patch(
    state: &AppState,
    caller: &Caller,
    current: Authenticated,
    body: PatchRequest,
) -> Result<Value, Problem> {
    let mut user = current.user;
    let display_name = body.display_name.map(display_name).transpose()?;
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
            state,
            &user,
            password,
            caller.client,
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
            state,
            &user,
            &new_email.canonical,
            &new_email.display,
            Purpose::EmailChange,
            &caller.metadata,
        )?;
        email_verification::send(state, &verification, &requested).await?;
    }
    if let Some(name) = display_name {
        state
            .store
            .set_display_name(&user.id, name.as_deref())
            .await?;
        user.display_name = name;
    }
    user_json(state, &user).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The body of `DELETE /v1/users/me`.
pub struct DeleteRequest {
    current_password: String,
    captcha_token: Option<String>,
}

/// Deletes the account: its sessions, reset tokens and verifications go; one
/// `UserDeletedEventV1` says so.
pub async fn delete(
    state: &AppState,
    caller: &Caller,
    current: Authenticated,
    body: DeleteRequest,
) -> Result<(), Problem> {
    let user = current.user;
    prove_password(
        state,
        &user,
        &body.current_password,
        caller.client,
        body.captcha_token.as_deref(),
    )
    .await?;
    let deleted = event(
        "UserDeletedEventV1",
        &user.id,
        json!({ "userId": user.id, "email": user.email }),
        &caller.metadata,
    )?;
    if !state.store.delete_user(&user.id, &deleted).await? {
        return Err(no_such_user());
    }
    state.outbox_waker.notify_one();
    metrics::counter!("users_deleted_total").increment(1);
    Ok(())
}
