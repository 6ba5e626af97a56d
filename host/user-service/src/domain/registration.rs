//! Registration: a new account with its first verification, or the reason there is none.

use super::{Caller, canonical_email, display_name, email_verification, events::event};
use crate::{
    email::Email,
    flows::{check_new_password, require_captcha, weak_password},
    passwords,
    problem::Problem,
    state::AppState,
    store::{User, random_id},
};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

/// The body of `POST /v1/users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    email: String,
    password: String,
    display_name: Option<String>,
    captcha_token: Option<String>,
    /// The tenant registering (default `default`): its allowed email domains apply.
    tenant: Option<String>,
}

/// A registered account.
pub struct Registered {
    /// Its id.
    pub id: String,
    /// The account as the client sees it, with the password policy's warnings.
    pub body: Value,
}

/// The words a password must not contain for this account: its address, its name, the
/// service's name.
pub(crate) fn context_words(
    state: &AppState,
    email: &str,
    display_name: Option<&str>,
) -> Vec<String> {
    let mut words = vec![email.to_owned(), state.config.service_name.clone()];
    words.extend(display_name.map(str::to_owned));
    words
}

/// Registers an account: the tenant's email domains, the CAPTCHA (when configured), the
/// password policy; then the user, its verification and their events, atomically.
pub async fn register(
    state: &AppState,
    caller: &Caller,
    body: RegisterRequest,
) -> Result<Registered, Problem> {
    let Email {
        canonical: email,
        display: email_display,
    } = canonical_email(&body.email)?;
    let tenant = body.tenant.as_deref().unwrap_or("default");
    if let Err(allowed) = state.security.check_email_domain(tenant, &email) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "email-domain-not-allowed",
            "This email domain cannot register for this tenant",
        )
        .detail(format!("Allowed domains: {}.", allowed.join(", "))));
    }
    let display_name = display_name(body.display_name)?;
    if state.config.flows.captcha_on_register {
        require_captcha(
            &state.host,
            &state.config.flows,
            body.captcha_token.as_deref(),
            "register",
            Some(caller.client.to_string()),
            Some(&email),
        )
        .await?;
    }
    let report = check_new_password(
        &state.checks,
        &state.config.flows,
        &body.password,
        context_words(state, &email, display_name.as_deref()),
        false,
    )
    .await;
    if report.verdict != policy_host::Verdict::Allow {
        return Err(weak_password(report));
    }
    let id = random_id().map_err(Problem::internal)?;
    let password_hash = passwords::hash(body.password)
        .await
        .map_err(Problem::internal)?;
    let user = User {
        id: id.clone(),
        email: email.clone(),
        email_display: email_display.clone(),
        display_name: display_name.clone(),
        password_hash,
        failed_logins: 0,
        reset_required: false,
    };
    let registered = event(
        "UserRegisteredEventV1",
        &id,
        json!({ "userId": id, "email": email, "displayName": display_name, "tenant": tenant }),
        &caller.metadata,
    )?;
    let (verification, requested) = email_verification::prepare(
        state,
        &user,
        &email,
        &email_display,
        email_verification::Purpose::Registration,
        &caller.metadata,
    )?;
    if !state
        .store
        .register_user(&user, &verification, &[&registered, &requested])
        .await?
    {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "email-taken",
            "An account with this email already exists",
        ));
    }
    state.outbox_waker.notify_one();
    metrics::counter!("users_registered_total").increment(1);
    let body = json!({
        "id": id,
        "email": email,
        "email_display": email_display,
        "display_name": display_name,
        "warnings": report.warnings,
    });
    Ok(Registered { id, body })
}
