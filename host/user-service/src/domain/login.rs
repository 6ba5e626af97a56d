//! Login, and the throttled proof of a password that login, a password change and the account
//! endpoints share.

use super::{Caller, canonical_email, sessions};
use crate::{
    client_address::throttle_key,
    flows::{self, require_captcha},
    passwords,
    problem::Problem,
    state::AppState,
    store::User,
    throttle::{Attempt, Decision},
};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::IpAddr;

/// The body of `POST /v1/sessions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    captcha_token: Option<String>,
}

/// `401 invalid-credentials`: the same whichever of the email and the password is wrong.
pub(crate) fn invalid_credentials() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
        "The email or password is wrong",
    )
}

/// Counts a password attempt on the account `email` from `client` and applies the throttle's
/// decision (see [`crate::throttle`]): `Ok` with the counted attempt when the password may be
/// checked; the refusal otherwise (the attempt is then taken back).
pub(crate) async fn throttled_attempt(
    state: &AppState,
    email: &str,
    client: IpAddr,
    captcha_token: Option<&str>,
    action: &str,
) -> Result<Attempt, Problem> {
    let attempt = state.throttle.begin(email, &throttle_key(client)).await?;
    let refusal = match state.throttle.decide(&attempt) {
        Decision::Evaluate => None,
        Decision::CaptchaRequired => require_captcha(
            &state.host,
            &state.config.flows,
            captcha_token,
            action,
            Some(client.to_string()),
            Some(email),
        )
        .await
        .err(),
        Decision::Locked => Some(
            Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "account-locked",
                "Too many failed attempts",
            )
            .detail("Reset your password to unlock the account."),
        ),
    };
    match refusal {
        None => Ok(attempt),
        Some(problem) => {
            state.throttle.not_evaluated(&attempt).await?;
            metrics::counter!("logins_total", "outcome" => "throttled").increment(1);
            Err(problem)
        }
    }
}

/// The account `email` when `password` is its password, proven by a login attempt: counted,
/// throttled (a CAPTCHA or a lock may refuse it first, see [`throttled_attempt`]), and on
/// success clearing the client's failure count. `Ok(None)` for a wrong password or no such
/// account, the failure counted; a password longer than any we store is refused uncounted.
pub(crate) async fn proven_account(
    state: &AppState,
    email: &str,
    password: &str,
    client: IpAddr,
    captcha_token: Option<&str>,
) -> Result<Option<User>, Problem> {
    if password.len() > flows::MAX_PASSWORD_BYTES {
        return Err(invalid_credentials());
    }
    let mut attempt = throttled_attempt(state, email, client, captcha_token, "login").await?;
    let matches = passwords::verify(
        password.to_owned(),
        attempt.user.as_ref().map(|user| user.password_hash.clone()),
    )
    .await
    .map_err(Problem::internal)?;
    // A failure was counted before the check; a proof takes the client's count back.
    let proven = attempt.user.take().filter(|_| matches);
    if proven.is_some() {
        state.throttle.succeeded(&attempt).await?;
    }
    Ok(proven)
}

/// Logs in: the throttled password check, then the breach check of the proven password and
/// the verified-address rule; a session on success.
pub async fn login(
    state: &AppState,
    caller: &Caller,
    body: LoginRequest,
) -> Result<Value, Problem> {
    let flows = &state.config.flows;
    let email = canonical_email(&body.email)?.canonical;
    let proven = proven_account(
        state,
        &email,
        &body.password,
        caller.client,
        body.captcha_token.as_deref(),
    )
    .await?;
    let Some(user) = proven else {
        metrics::counter!("logins_total", "outcome" => "failed").increment(1);
        return Err(invalid_credentials());
    };
    // The password was just proven: check it against the breach corpus now.
    let breached = if let Some(slot) = flows.breach_check.as_deref() {
        matches!(
            state
                .host
                .check_breach_staged(slot, &body.password, Some(&email))
                .await
                .outcome,
            policy_host::BreachOutcome::Breached { .. }
        )
    } else {
        false
    };
    let reset_required = breached || user.reset_required;
    state
        .store
        .record_successful_login(&user.id, reset_required)
        .await?;
    // Only after the password was proven: a wrong one learns nothing about verification.
    if flows.require_verified_email
        && state
            .store
            .account_details(&user.id)
            .await?
            .is_none_or(|details| details.email_verified_at.is_none())
    {
        metrics::counter!("logins_total", "outcome" => "unverified").increment(1);
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            "email-not-verified",
            "The email address is not verified yet",
        )
        .detail(
            "Follow the link sent at registration, or ask for a new one at \
             POST /v1/email/verification-requests.",
        ));
    }
    let (token, session) = sessions::start(state, &user.id, "password").await?;
    metrics::counter!("logins_total", "outcome" => "succeeded").increment(1);
    Ok(json!({
        "user_id": user.id,
        "reset_required": reset_required,
        "password_breached": breached,
        "session_token": token,
        "session": sessions::session_json(&state.config.sessions, &session),
    }))
}
