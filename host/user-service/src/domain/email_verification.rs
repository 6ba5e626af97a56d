//! Email verification: a single-use token (only its SHA-256 is stored) travels to the address
//! in `EmailVerificationRequestedEventV1`, and `POST /v1/email/verifications` with it proves
//! the user reads that mailbox (`EmailVerifiedEventV1`).
//!
//! Registration asks for one; `POST /v1/email/verification-requests` asks again (always 202,
//! at most once per `verification-resend-interval-s` per account); an email change
//! (`PATCH /v1/users/me`) asks for the new address, which replaces the old one only once
//! verified.

use super::{
    canonical_email,
    events::{RequestMetadata, event},
};
use crate::{
    problem::Problem,
    state::AppState,
    store::{NewVerification, OutboxEvent, User, VerifyOutcome, now},
};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Longest verification token looked up, in bytes (real ones are 64 hex digits).
pub const MAX_VERIFICATION_TOKEN_BYTES: usize = 256;

/// Why a verification is asked for (`purpose` in the event).
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// The address given at registration.
    Registration,
    /// The registered address again (a re-send).
    Resend,
    /// A new address the user wants instead of the current one.
    EmailChange,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Registration => "registration",
            Self::Resend => "resend",
            Self::EmailChange => "email-change",
        }
    }
}

fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// A new verification of `email` (canonical, and as typed) for `user`, and its
/// `EmailVerificationRequestedEventV1`, ready to be stored together.
pub fn prepare(
    state: &AppState,
    user: &User,
    email: &str,
    email_display: &str,
    purpose: Purpose,
    metadata: &RequestMetadata,
) -> Result<(NewVerification, OutboxEvent), Problem> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(Problem::internal)?;
    let token = hex::encode(secret);
    let flows = &state.config.flows;
    let expires_at =
        now().saturating_add(i64::try_from(flows.verification_token_ttl_s).unwrap_or(i64::MAX));
    // The token reaches the user only through the notification; only its hash is stored.
    let requested = event(
        "EmailVerificationRequestedEventV1",
        &user.id,
        json!({
            "userId": user.id,
            "email": email,
            "currentEmail": user.email,
            "userName": user.display_name,
            "purpose": purpose.as_str(),
            "verificationToken": token,
            "verificationLink": flows.verification_link.replace("{token}", &token),
            "expiresAt": expires_at,
        }),
        metadata,
    )?;
    let verification = NewVerification {
        token_hash: hash(&token),
        user_id: user.id.clone(),
        email: email.to_owned(),
        email_display: email_display.to_owned(),
        expires_at,
    };
    Ok((verification, requested))
}

/// Stores a verification prepared by [`prepare`] with its event and wakes the relay.
pub async fn send(
    state: &AppState,
    verification: &NewVerification,
    requested: &OutboxEvent,
) -> Result<(), Problem> {
    state
        .store
        .create_verification(verification, requested)
        .await?;
    state.outbox_waker.notify_one();
    metrics::counter!("email_verifications_requested_total").increment(1);
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The body of `POST /v1/email/verifications`.
pub struct VerifyRequest {
    token: String,
}

fn invalid_token() -> Problem {
    Problem::bad_request(
        "invalid-verification-token",
        "The verification link is invalid, expired or already used; request a new one.",
    )
}

/// Verifies the address a token was sent to; the account and address verified.
pub async fn verify(
    state: &AppState,
    metadata: &RequestMetadata,
    body: VerifyRequest,
) -> Result<Value, Problem> {
    if body.token.len() > MAX_VERIFICATION_TOKEN_BYTES {
        return Err(invalid_token());
    }
    let token_hash = hash(&body.token);
    let pending = state
        .store
        .pending_verification(&token_hash)
        .await?
        .ok_or_else(invalid_token)?;
    let previous = state
        .store
        .user_by_id(&pending.user_id)
        .await?
        .ok_or_else(invalid_token)?;
    let verified = event(
        "EmailVerifiedEventV1",
        &pending.user_id,
        json!({
            "userId": pending.user_id,
            "email": pending.email,
            "previousEmail": (previous.email != pending.email).then_some(&previous.email),
        }),
        metadata,
    )?;
    match state
        .store
        .complete_verification(&token_hash, &pending, &verified)
        .await?
    {
        VerifyOutcome::Verified => {}
        VerifyOutcome::InvalidToken => return Err(invalid_token()),
        VerifyOutcome::EmailTaken => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "email-taken",
                "An account with this email already exists",
            ));
        }
    }
    state.outbox_waker.notify_one();
    metrics::counter!("email_verifications_completed_total").increment(1);
    Ok(json!({
        "user_id": pending.user_id,
        "email": pending.email,
        "email_verified": true,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
/// The body of `POST /v1/email/verification-requests`.
pub struct ResendRequest {
    email: String,
}

/// Sends the verification again, when the account exists, is unverified and did not ask too
/// recently; the caller answers the same whichever (that is nobody's business).
pub async fn resend(
    state: &AppState,
    metadata: &RequestMetadata,
    body: ResendRequest,
) -> Result<(), Problem> {
    let email = canonical_email(&body.email)?.canonical;
    if let Some(user) = state.store.user_by_email(&email).await?
        && let Some(details) = state.store.account_details(&user.id).await?
        && details.email_verified_at.is_none()
    {
        let interval =
            i64::try_from(state.config.flows.verification_resend_interval_s).unwrap_or(i64::MAX);
        let recent = state
            .store
            .latest_verification_at(&user.id)
            .await?
            .is_some_and(|at| now().saturating_sub(at) < interval);
        if recent {
            metrics::counter!("email_verifications_throttled_total").increment(1);
        } else {
            let (verification, requested) = prepare(
                state,
                &user,
                &user.email,
                &user.email_display,
                Purpose::Resend,
                metadata,
            )?;
            send(state, &verification, &requested).await?;
        }
    }
    Ok(())
}
