//! The HTTP API: JSON under `/v1`, admin under `/admin`, probes and metrics.

use crate::{
    app::AppState,
    client_address::throttle_key,
    email::{self, Email},
    email_verification::{self, Purpose},
    flows::{self, check_new_password, require_captcha, weak_password},
    passwords,
    problem::Problem,
    sessions::{self, session_json},
    store::{OutboxEvent, Revoke, User, now, random_id},
    throttle::{Attempt, Decision},
};
use axum::{
    Json,
    extract::{
        ConnectInfo, FromRequest, FromRequestParts, Path, Request, State, rejection::JsonRejection,
    },
    http::{HeaderMap, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};

/// `Json<T>` whose rejections are problem documents (malformed JSON, wrong content type,
/// oversized body), never axum's plain-text defaults.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(match &rejection {
                JsonRejection::MissingJsonContentType(_) => Problem::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported-media-type",
                    "Send JSON",
                )
                .detail("Use `Content-Type: application/json`."),
                JsonRejection::BytesRejection(_)
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    Problem::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body-too-large",
                        "The request body is too large",
                    )
                }
                JsonRejection::JsonDataError(error) => {
                    Problem::bad_request("invalid-body", error.body_text())
                }
                _ => Problem::bad_request("malformed-json", rejection.body_text()),
            }),
        }
    }
}

/// Canonicalises an email address (see [`crate::email`]); `400 invalid-email` when refused.
pub fn canonical_email(typed: &str) -> Result<Email, Problem> {
    email::canonicalize(typed).map_err(|error| {
        Problem::bad_request(
            "invalid-email",
            format!("The email address is not valid: {error}."),
        )
    })
}

/// The client's address: the peer, or what trusted proxies say (see
/// [`crate::client_address`]).
pub struct ClientAddress(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)), |info| info.0);
        Ok(Self(
            state
                .config
                .http
                .trusted_proxies
                .client_address(&parts.headers, peer),
        ))
    }
}

/// Who asked for a state change, recorded in its event (`data.request`).
pub struct RequestMetadata {
    client_ip: String,
    user_agent: Option<String>,
    request_id: Option<String>,
    /// The request's W3C trace context (`crate::trace_context`), stored with its events.
    traceparent: Option<String>,
}

impl FromRequestParts<AppState> for RequestMetadata {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Ok(ClientAddress(client)) = ClientAddress::from_request_parts(parts, state).await;
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(|value| value.chars().take(256).collect::<String>())
        };
        Ok(Self {
            client_ip: client.to_string(),
            user_agent: header("user-agent"),
            request_id: header("x-request-id"),
            traceparent: parts
                .extensions
                .get::<crate::trace_context::TraceContext>()
                .map(crate::trace_context::TraceContext::traceparent),
        })
    }
}

impl RequestMetadata {
    fn to_json(&self) -> Value {
        json!({ "clientIp": self.client_ip, "userAgent": self.user_agent, "requestId": self.request_id })
    }
}

/// An outbox event as stored: `{ id, type, version, occurredAt, data, traceparent }`, with the
/// request's metadata as `data.request` (the sinks emit it as a CloudEvent, see
/// [`crate::outbox::cloudevents`]).
pub(crate) fn event(
    event_type: &str,
    aggregate_id: &str,
    mut data: Value,
    request: &RequestMetadata,
) -> Result<OutboxEvent, Problem> {
    let id = random_id().map_err(Problem::internal)?;
    data["request"] = request.to_json();
    let mut payload =
        json!({ "id": id, "type": event_type, "version": 1, "occurredAt": now(), "data": data });
    if let Some(traceparent) = &request.traceparent {
        payload["traceparent"] = Value::from(traceparent.as_str());
    }
    Ok(OutboxEvent {
        id,
        event_type: event_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        payload,
    })
}

/// Longest display name accepted, in bytes.
pub const MAX_DISPLAY_NAME_BYTES: usize = 200;

/// Longest reset token looked up, in bytes (real ones are 64 hex digits).
pub const MAX_RESET_TOKEN_BYTES: usize = 256;

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

fn context_words(state: &AppState, email: &str, display_name: Option<&str>) -> Vec<String> {
    let mut words = vec![email.to_owned(), state.config.service_name.clone()];
    words.extend(display_name.map(str::to_owned));
    words
}

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

/// `POST /v1/users`
pub async fn register(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    metadata: RequestMetadata,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<Response, Problem> {
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
    let display_name = body
        .display_name
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty());
    if display_name
        .as_ref()
        .is_some_and(|name| name.len() > MAX_DISPLAY_NAME_BYTES)
    {
        return Err(Problem::bad_request(
            "invalid-display-name",
            "The display name is longer than 200 bytes.",
        ));
    }
    if state.config.flows.captcha_on_register {
        require_captcha(
            &state.host,
            &state.config.flows,
            body.captcha_token.as_deref(),
            "register",
            Some(client.to_string()),
        )
        .await?;
    }
    let report = check_new_password(
        &state.checks,
        &state.config.flows,
        &body.password,
        context_words(&state, &email, display_name.as_deref()),
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
        &metadata,
    )?;
    let (verification, requested) = email_verification::prepare(
        &state,
        &user,
        &email,
        &email_display,
        Purpose::Registration,
        &metadata,
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
    let body = json!({ "id": id, "email": email, "email_display": email_display, "display_name": display_name, "warnings": report.warnings });
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/v1/users/{id}"))],
        Json(body),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    captcha_token: Option<String>,
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

/// `POST /v1/sessions`
pub async fn login(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Response, Problem> {
    let flows = &state.config.flows;
    let email = canonical_email(&body.email)?.canonical;
    if body.password.len() > flows::MAX_PASSWORD_BYTES {
        return Err(invalid_credentials());
    }
    let attempt = throttled_attempt(
        &state,
        &email,
        client,
        body.captcha_token.as_deref(),
        "login",
    )
    .await?;
    let matches = passwords::verify(
        body.password.clone(),
        attempt.user.as_ref().map(|user| user.password_hash.clone()),
    )
    .await
    .map_err(Problem::internal)?;
    let Some(user) = attempt.user.as_ref().filter(|_| matches) else {
        // Already counted, before the check.
        metrics::counter!("logins_total", "outcome" => "failed").increment(1);
        return Err(invalid_credentials());
    };
    state.throttle.succeeded(&attempt).await?;
    // The password was just proven: check it against the breach corpus now.
    let breached = if flows.breach_check.is_empty() {
        false
    } else {
        matches!(
            state
                .host
                .check_breach(&flows.breach_check, &body.password)
                .await
                .outcome,
            policy_host::BreachOutcome::Breached { .. }
        )
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
        .detail("Follow the link sent at registration, or ask for a new one at POST /v1/email/verification-requests."));
    }
    let (token, session) = sessions::start(&state, &user.id, "password").await?;
    metrics::counter!("logins_total", "outcome" => "succeeded").increment(1);
    Ok(Json(json!({
        "user_id": user.id,
        "reset_required": reset_required,
        "password_breached": breached,
        "session_token": token,
        "session": session_json(&state.config.sessions, &session),
    }))
    .into_response())
}

pub(crate) fn invalid_credentials() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
        "The email or password is wrong",
    )
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
        json!({ "userId": user.id, "email": user.email, "reason": reason, "sessionsRevoked": sessions_revoked }),
        metadata,
    )?;
    Ok((hash, changed))
}

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

/// `POST /v1/password/change`: with a session (`Authorization: Bearer`), its user's password,
/// ending every other session; without one, the `email`'s account (the form that predates
/// sessions), ending all of its sessions. Either way the current password is proven by a login
/// attempt, throttled and counted like one.
pub async fn change_password(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    metadata: RequestMetadata,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChangeRequest>,
) -> Result<Response, Problem> {
    let current = match sessions::bearer(&headers) {
        Some(_) => Some(sessions::authenticate(&state, &headers).await?),
        None => None,
    };
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
    if body.current_password.len() > flows::MAX_PASSWORD_BYTES {
        return Err(invalid_credentials());
    }
    let attempt = throttled_attempt(
        &state,
        &email,
        client,
        body.captcha_token.as_deref(),
        "login",
    )
    .await?;
    let matches = passwords::verify(
        body.current_password,
        attempt.user.as_ref().map(|user| user.password_hash.clone()),
    )
    .await
    .map_err(Problem::internal)?;
    let Some(user) = attempt.user.as_ref().filter(|_| matches) else {
        return Err(invalid_credentials());
    };
    state.throttle.succeeded(&attempt).await?;
    let (revoke, revoked) = match &current {
        Some(current) => (Revoke::AllBut(&current.session.id), "others"),
        None => (Revoke::All, "all"),
    };
    let (hash, changed) = accept_new_password(
        &state,
        user,
        body.new_password,
        "change",
        revoked,
        &metadata,
    )
    .await?;
    // Clears the failure count too.
    state
        .store
        .set_password_revoking(&user.id, &hash, None, revoke, &changed)
        .await?;
    state.outbox_waker.notify_one();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    email: String,
    captcha_token: Option<String>,
}

/// `POST /v1/password/reset-requests`: always 202, whether or not the account exists.
pub async fn request_reset(
    State(state): State<AppState>,
    ClientAddress(client): ClientAddress,
    metadata: RequestMetadata,
    ApiJson(body): ApiJson<ResetRequest>,
) -> Result<Response, Problem> {
    let email = canonical_email(&body.email)?.canonical;
    if state.config.flows.captcha_on_register {
        require_captcha(
            &state.host,
            &state.config.flows,
            body.captcha_token.as_deref(),
            "password_reset",
            Some(client.to_string()),
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
            &metadata,
        )?;
        state
            .store
            .create_reset_token(&token_hash(&token), &user.id, expires_at, &requested)
            .await?;
        state.outbox_waker.notify_one();
    }
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "accepted" }))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteResetRequest {
    token: String,
    new_password: String,
}

/// `POST /v1/password/resets`
pub async fn complete_reset(
    State(state): State<AppState>,
    metadata: RequestMetadata,
    ApiJson(body): ApiJson<CompleteResetRequest>,
) -> Result<Response, Problem> {
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
        accept_new_password(&state, &user, body.new_password, "reset", "all", &metadata).await?;
    if !state
        .store
        .set_password_revoking(&user.id, &password_hash, Some(&hash), Revoke::All, &changed)
        .await?
    {
        return Err(invalid());
    }
    state.outbox_waker.notify_one();
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest {
    password: String,
    email: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    has_mfa: bool,
}

/// `POST /v1/password/check`: a dry run for a UI.
pub async fn check_password(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CheckRequest>,
) -> Result<Response, Problem> {
    let mut context = vec![state.config.service_name.clone()];
    context.extend(body.email.filter(|email| !email.trim().is_empty()));
    context.extend(body.display_name);
    let report = check_new_password(
        &state.checks,
        &state.config.flows,
        &body.password,
        context,
        body.has_mfa,
    )
    .await;
    Ok(Json(report).into_response())
}

/// `GET /healthz`
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers, the password policy is loaded, and so is every slot
/// with a registry source (`missing` names the slots that are not).
pub async fn readyz(State(state): State<AppState>) -> Response {
    let database = state.store.ping().await;
    let policy = &state.config.flows.password_policy;
    let mut missing = state.host.catalog().missing_sources();
    if !policy.is_empty()
        && !missing.contains(policy)
        && state
            .host
            .catalog()
            .slot(policy)
            .and_then(|slot| slot.current())
            .is_none()
    {
        missing.push(policy.clone());
    }
    let plugins = missing.is_empty();
    let status = if database && plugins {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({ "database": database, "plugins": plugins });
    // Named only when something is missing, so a ready answer is unchanged.
    if !missing.is_empty() {
        body["missing"] = json!(missing);
    }
    (status, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Response {
    // The outbox's backlog, read at scrape time: what an alert on stuck deliveries needs.
    match state.store.undelivered_counts().await {
        Ok((pending, dead)) => {
            metrics::gauge!("outbox_pending_events").set(pending as f64);
            metrics::gauge!("outbox_dead_letters").set(dead as f64);
        }
        Err(error) => tracing::warn!(%error, "cannot count the outbox for /metrics"),
    }
    let status = state.security.status();
    metrics::gauge!("security_policy_age_seconds").set(status.fetched_at.map_or(-1.0, |fetched| {
        crate::store::now().saturating_sub(fetched as i64) as f64
    }));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// Checks the admin bearer token; without a configured token the admin API does not exist.
pub(crate) fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), Problem> {
    let Some(expected) = &state.config.admin_token else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    // Compare hashes so the comparison time doesn't depend on where the strings differ.
    if given.is_some_and(|given| {
        Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
    }) {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "A valid admin bearer token is required",
        ))
    }
}

/// `GET /admin/plugins`
pub async fn list_plugins(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    let plugins: Vec<Value> = state
        .host
        .catalog()
        .status()
        .into_iter()
        .map(|slot| {
            json!({
                "name": slot.name,
                "kind": slot.kind.world(),
                "enabled": slot.enabled,
                "version": slot.current.as_ref().map(|current| current.identity.version.to_string()),
                "sha256": slot.current.as_ref().map(|current| current.identity.sha256.to_string()),
                "loaded_at": slot.current.as_ref().and_then(|current| current.loaded_at.duration_since(std::time::UNIX_EPOCH).ok()).map(|elapsed| elapsed.as_secs()),
                "decisions_served": slot.current.as_ref().map(|current| current.decisions_served),
                "previous_version": slot.previous.as_ref().map(|previous| previous.version.to_string()),
                "last_error": slot.last_error,
                "source": slot.source.source,
                "require_signature": slot.source.require_signature,
                "pending_source": slot.source.pending,
                "origin": slot.source.origin,
                "digest": slot.current.as_ref().and_then(|current| current.identity.provenance.as_ref()).map(|provenance| provenance.digest.clone()),
                "verified_by": slot.current.as_ref().and_then(|current| current.identity.provenance.as_ref()).map(|provenance| provenance.verified_by.clone()),
            })
        })
        .collect();
    Ok(Json(json!({ "plugins": plugins })).into_response())
}

/// `POST /admin/plugins/{name}/reload`
pub async fn reload_plugin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    match state.host.catalog().reload(&name).await {
        Ok(policy_host::catalog::ReloadOutcome::Swapped { from, to }) => {
            Ok(Json(json!({ "outcome": "swapped", "from": from.map(|from| from.version.to_string()), "version": to.version.to_string(), "sha256": to.sha256.to_string() })).into_response())
        }
        Ok(policy_host::catalog::ReloadOutcome::Unchanged(identity)) => {
            Ok(Json(json!({ "outcome": "unchanged", "version": identity.version.to_string(), "sha256": identity.sha256.to_string() })).into_response())
        }
        Err(policy_host::LoadError::UnknownSlot { .. }) => Err(Problem::new(StatusCode::NOT_FOUND, "unknown-plugin", "No such plugin")),
        Err(error) => Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "plugin-rejected", "The candidate was rejected; the serving version is unchanged").detail(error.to_string())),
    }
}

/// `POST /admin/plugins/{name}/rollback`
pub async fn rollback_plugin(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    match state.host.catalog().rollback(&name).await {
        Ok(identity) => Ok(Json(json!({ "outcome": "rolled-back", "version": identity.version.to_string(), "sha256": identity.sha256.to_string() })).into_response()),
        Err(policy_host::catalog::RollbackError::UnknownSlot(_)) => Err(Problem::new(StatusCode::NOT_FOUND, "unknown-plugin", "No such plugin")),
        Err(error) => Err(Problem::new(StatusCode::CONFLICT, "no-previous-version", "Nothing to roll back to").detail(error.to_string())),
    }
}

/// Any other path.
pub async fn not_found() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "not-found", "Not found")
}
