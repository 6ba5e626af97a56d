//! Password change (with the current password), reset (a token sent by event, then the new
//! password) and the dry-run check for a UI.

use super::{
    Caller, canonical_email,
    events::{RequestMetadata, event},
    login::{invalid_credentials, proven_account},
    registration::context_words,
    sessions::{self, Authenticated},
};
use crate::{
    flows::{PasswordReport, check_new_password, require_captcha, weak_password},
    passwords,
    problem::Problem,
    state::AppState,
    store::{OutboxEvent, Revoke, User, now},
};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Longest reset token looked up, in bytes (real ones are 64 hex digits).
pub const MAX_RESET_TOKEN_BYTES: usize = 256;

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Checks a user's new password (policy with their context words, breach check), hashes it,
/// and prepares its `PasswordChangedEventV1`.
async fn accept_new_password(
    state: &AppState,
    user: &User,
    password: String,
    reason: &str,
    sessions_revoked: &str,
    metadata: &RequestMetadata,
) -> Result<(String, OutboxEvent), Problem> {
    let context = context_words(state, &user.email, user.display_name.as_deref());
    let report = check_new_password(
        &state.checks,
        &state.config.flows,
        &password,
        context,
        false,
    )
    .await;
    if report.verdict != policy_host::Verdict::Allow {
        return Err(weak_password(report));
    }
    let hash = passwords::hash(password).await.map_err(Problem::internal)?;
    let changed = event(
        "PasswordChangedEventV1",
        &user.id,
        json!({
            "userId": user.id,
            "email": user.email,
            "reason": reason,
            "sessionsRevoked": sessions_revoked,
        }),
        metadata,
    )?;
    Ok((hash, changed))
}

/// The body of `POST /v1/password/change`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRequest {
    /// The account, without a session; with one, absent or the session's account.
    email: Option<String>,
    current_password: String,
    new_password: String,
    /// Required, like a login's, once the account or client has too many failures.
    captcha_token: Option<String>,
}

/// Changes a password: with a session (`current`), its user's, ending every other session;
/// without one, the `email`'s account (the form that predates sessions), ending all of its
/// sessions. Either way the current password is proven by a login attempt, throttled and
/// counted like one.
pub async fn change(
    state: &AppState,
    caller: &Caller,
    current: Option<Authenticated>,
    body: ChangeRequest,
) -> Result<(), Problem> {
    let email = match (&current, body.email.as_deref()) {
        (_, Some(typed)) => {
            let email = canonical_email(typed)?.canonical;
            if current
                .as_ref()
                .is_some_and(|current| current.user.email != email)
            {
                return Err(invalid_credentials());
            }
            email
        }
        (Some(current), None) => current.user.email.clone(),
        (None, None) => return Err(sessions::unauthenticated()),
    };
    let proven = proven_account(
        state,
        &email,
        &body.current_password,
        caller.client,
        body.captcha_token.as_deref(),
    )
    .await?;
    let Some(user) = proven else {
        return Err(invalid_credentials());
    };
    let (revoke, revoked) = match &current {
        Some(current) => (Revoke::AllBut(&current.session.id), "others"),
        None => (Revoke::All, "all"),
    };
    let (hash, changed) = accept_new_password(
        state,
        &user,
        body.new_password,
        "change",
        revoked,
        &caller.metadata,
    )
    .await?;
    // Clears the failure count too.
    state
        .store
        .set_password_revoking(&user.id, &hash, None, revoke, &changed)
        .await?;
    state.outbox_waker.notify_one();
    Ok(())
}

/// The body of `POST /v1/password/reset-requests`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    email: String,
    captcha_token: Option<String>,
}

/// Asks for a reset: when the account exists, a single-use token travels in its
/// `PasswordResetRequestedEventV1` (only its hash is stored). The same answer either way.
pub async fn request_reset(
    state: &AppState,
    caller: &Caller,
    body: ResetRequest,
) -> Result<(), Problem> {
    let email = canonical_email(&body.email)?.canonical;
    if state.config.flows.captcha_on_reset_request() {
        require_captcha(
            &state.host,
            &state.config.flows,
            body.captcha_token.as_deref(),
            "password_reset",
            Some(caller.client.to_string()),
            Some(&email),
        )
        .await?;
    }
    if let Some(user) = state.store.user_by_email(&email).await? {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(Problem::internal)?;
        let token = hex::encode(secret);
        let expires_at = now() + state.config.flows.reset_token_ttl_s as i64;
        // The token reaches the user only through the notification; only its hash is stored.
        let requested = event(
            "PasswordResetRequestedEventV1",
            &user.id,
            json!({
                "userId": user.id,
                "email": user.email,
                "userName": user.display_name,
                "resetToken": token,
                "resetLink": state.config.flows.reset_link.replace("{token}", &token),
                "expiresAt": expires_at,
            }),
            &caller.metadata,
        )?;
        state
            .store
            .create_reset_token(&token_hash(&token), &user.id, expires_at, &requested)
            .await?;
        state.outbox_waker.notify_one();
    }
    Ok(())
}

/// The body of `POST /v1/password/resets`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteResetRequest {
    token: String,
    new_password: String,
}

/// Completes a reset: the token's account gets the new password, every session ends.
pub async fn complete_reset(
    state: &AppState,
    metadata: &RequestMetadata,
    body: CompleteResetRequest,
) -> Result<(), Problem> {
    let invalid = || {
        Problem::bad_request(
            "invalid-reset-token",
            "The reset link is invalid, expired or already used; request a new one.",
        )
    };
    if body.token.len() > MAX_RESET_TOKEN_BYTES {
        return Err(invalid());
    }
    let hash = token_hash(&body.token);
    let user_id = state
        .store
        .reset_token_user(&hash)
        .await?
        .ok_or_else(invalid)?;
    let user = state
        .store
        .user_by_id(&user_id)
        .await?
        .ok_or_else(invalid)?;
    let (password_hash, changed) =
        accept_new_password(state, &user, body.new_password, "reset", "all", metadata).await?;
    if !state
        .store
        .set_password_revoking(&user.id, &password_hash, Some(&hash), Revoke::All, &changed)
        .await?
    {
        return Err(invalid());
    }
    state.outbox_waker.notify_one();
    Ok(())
}

/// The body of `POST /v1/password/check`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    password: String,
    email: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    has_mfa: bool,
}

/// A dry run of the password policy and breach check, for a UI.
pub async fn check(state: &AppState, body: CheckRequest) -> PasswordReport {
    let mut context = vec![state.config.service_name.clone()];
    context.extend(body.email.filter(|email| !email.trim().is_empty()));
    context.extend(body.display_name);
    check_new_password(
        &state.checks,
        &state.config.flows,
        &body.password,
        context,
        body.has_mfa,
    )
    .await
}
