//! Sessions: what a successful login gives a client to present on its next requests.
//!
//! A session token is 256 bits from the OS's generator, base64url without padding (43
//! characters), shown once in the login response; only its SHA-256 is stored. Clients send it
//! as `Authorization: Bearer <token>`. A session ends at its absolute expiry
//! (`absolute-lifetime-s`, 30 days: NIST SP 800-63B rev. 4's reauthentication bound for a
//! single-factor session) or after `idle-timeout-s` without use, whichever comes first. A use
//! is recorded at most once per `touch-interval-s`, so most authenticated requests are one read
//! and no write; the idle expiry a client sees is therefore up to that interval early, never late.

use crate::{
    problem::Problem,
    state::AppState,
    store::{Revoke, StoredSession, User, now, random_id},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The `[sessions]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Longest a session lives, however much it is used, in seconds (`absolute-lifetime-s`).
    #[serde(rename = "absolute-lifetime-s")]
    pub absolute_lifetime_s: u64,
    /// A session unused this long ends, in seconds (`idle-timeout-s`).
    #[serde(rename = "idle-timeout-s")]
    pub idle_timeout_s: u64,
    /// A use is written to the database at most this often per session, in seconds
    /// (`touch-interval-s`; 0: every request).
    #[serde(rename = "touch-interval-s")]
    pub touch_interval_s: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            absolute_lifetime_s: 30 * 24 * 3600,
            idle_timeout_s: 24 * 3600,
            touch_interval_s: 60,
        }
    }
}

impl SessionConfig {
    pub(crate) fn idle_s(&self) -> i64 {
        i64::try_from(self.idle_timeout_s).unwrap_or(i64::MAX)
    }

    fn absolute_s(&self) -> i64 {
        i64::try_from(self.absolute_lifetime_s).unwrap_or(i64::MAX)
    }

    /// When `session` ends for want of use (never after its absolute expiry).
    pub fn idle_expires_at(&self, session: &StoredSession) -> i64 {
        session
            .last_seen_at
            .saturating_add(self.idle_s())
            .min(session.expires_at)
    }

    /// Whether `session` is still usable at `at`.
    pub fn is_live(&self, session: &StoredSession, at: i64) -> bool {
        at < session.expires_at && at < self.idle_expires_at(session)
    }
}

/// How often, at most, ended sessions are deleted (seconds); logins trigger it.
const PRUNE_EVERY_S: i64 = 600;

/// Deletes ended sessions in the background, at most once per [`PRUNE_EVERY_S`] per process
/// (each replica prunes; the statement is idempotent).
fn prune_now_and_then(state: &AppState, now: i64) {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let last = LAST.load(Ordering::Relaxed);
    if now.saturating_sub(last) < PRUNE_EVERY_S
        || LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    let store = state.store.clone();
    let idle = state.config.sessions.idle_s();
    tokio::spawn(async move {
        match store.prune_sessions(idle).await {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "deleted ended sessions"),
            Err(error) => tracing::warn!(%error, "cannot delete ended sessions"),
        }
    });
}

/// Longest bearer value looked up, in bytes (real tokens are 43).
pub const MAX_TOKEN_BYTES: usize = 128;

/// SHA-256 of a session token, hex: what the database keeps.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new token: 256 random bits, base64url without padding.
pub fn new_token() -> Result<String, getrandom::Error> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)?;
    Ok(URL_SAFE_NO_PAD.encode(secret))
}

/// Starts a session for `user_id`; returns its token (the only time it exists outside the
/// client) and the stored session.
pub async fn start(
    state: &AppState,
    user_id: &str,
    authenticated_with: &str,
) -> Result<(String, StoredSession), Problem> {
    let token = new_token().map_err(Problem::internal)?;
    let now = now();
    let session = StoredSession {
        id: random_id().map_err(Problem::internal)?,
        user_id: user_id.to_owned(),
        created_at: now,
        expires_at: now.saturating_add(state.config.sessions.absolute_s()),
        last_seen_at: now,
        authenticated_with: authenticated_with.to_owned(),
    };
    state
        .store
        .create_session(&session, &token_hash(&token))
        .await?;
    metrics::counter!("sessions_started_total").increment(1);
    prune_now_and_then(state, now);
    Ok((token, session))
}

/// A session as clients see it (never its token).
pub fn session_json(config: &SessionConfig, session: &StoredSession) -> Value {
    json!({
        "id": session.id,
        "user_id": session.user_id,
        "created_at": session.created_at,
        "expires_at": session.expires_at,
        "idle_expires_at": config.idle_expires_at(session),
        "authenticated_with": session.authenticated_with,
    })
}

/// `401 unauthenticated`: no, a malformed, an unknown, an expired or a revoked session token.
pub fn unauthenticated() -> Problem {
    Problem::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "A valid session token is required",
    )
    .detail("Send `Authorization: Bearer <session_token>` from a login.")
}

/// A request made with a live session: the session and its user.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The session the token opened.
    pub session: StoredSession,
    /// Its user.
    pub user: User,
}

/// Finds the live session of a bearer `token`, recording its use when the last recorded one is
/// older than `touch-interval-s`. An expired session is deleted when met.
pub async fn authenticate(state: &AppState, token: Option<&str>) -> Result<Authenticated, Problem> {
    let token = token.ok_or_else(unauthenticated)?;
    let well_formed = token.len() <= MAX_TOKEN_BYTES
        && token
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if !well_formed {
        return Err(unauthenticated());
    }
    let config = &state.config.sessions;
    let Some(session) = state
        .store
        .session_by_token_hash(&token_hash(token))
        .await?
    else {
        return Err(unauthenticated());
    };
    let now = now();
    if !config.is_live(&session, now) {
        state
            .store
            .delete_session(&session.user_id, &session.id)
            .await?;
        return Err(unauthenticated());
    }
    let Some(user) = state.store.user_by_id(&session.user_id).await? else {
        return Err(unauthenticated());
    };
    let mut session = session;
    let touch = i64::try_from(config.touch_interval_s).unwrap_or(i64::MAX);
    if now.saturating_sub(session.last_seen_at) >= touch && now > session.last_seen_at {
        state.store.touch_session(&session.id, now).await?;
        session.last_seen_at = now;
    }
    Ok(Authenticated { session, user })
}

/// Who the session's user is: the session and the account.
pub async fn whoami(state: &AppState, current: &Authenticated) -> Result<Value, Problem> {
    let user = super::accounts::user_json(state, &current.user).await?;
    Ok(json!({
        "session": session_json(&state.config.sessions, &current.session),
        "user": user,
    }))
}

/// Ends the current session (log out).
pub async fn logout(state: &AppState, current: &Authenticated) -> Result<(), Problem> {
    state
        .store
        .delete_session(&current.user.id, &current.session.id)
        .await?;
    Ok(())
}

/// The user's live sessions (no tokens), `current` marking this one.
pub async fn list(state: &AppState, current: &Authenticated) -> Result<Value, Problem> {
    let config = &state.config.sessions;
    let sessions: Vec<Value> = state
        .store
        .active_sessions(&current.user.id, config.idle_s())
        .await?
        .iter()
        .map(|session| {
            let mut json = session_json(config, session);
            json["current"] = json!(session.id == current.session.id);
            json
        })
        .collect();
    Ok(json!({ "sessions": sessions }))
}

/// Ends every other session of the user; how many ended.
pub async fn revoke_others(state: &AppState, current: &Authenticated) -> Result<Value, Problem> {
    let revoked = state
        .store
        .revoke_sessions(&current.user.id, Revoke::AllBut(&current.session.id))
        .await?;
    Ok(json!({ "revoked": revoked }))
}

/// Ends every session of a user (an admin's action); how many ended.
pub async fn revoke_all(state: &AppState, user_id: &str) -> Result<Value, Problem> {
    if state.store.user_by_id(user_id).await?.is_none() {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "unknown-user",
            "No such user",
        ));
    }
    let revoked = state.store.revoke_sessions(user_id, Revoke::All).await?;
    Ok(json!({ "revoked": revoked }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bits_of_base64url() {
        let token = new_token().unwrap();
        assert_eq!(token.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&token).unwrap().len(), 32);
        assert_ne!(token, new_token().unwrap());
        assert_eq!(token_hash(&token).len(), 64);
    }

    #[test]
    fn idle_expiry_never_passes_the_absolute_one() {
        let config = SessionConfig {
            absolute_lifetime_s: 100,
            idle_timeout_s: 30,
            touch_interval_s: 0,
        };
        let session = StoredSession {
            id: "s".into(),
            user_id: "u".into(),
            created_at: 0,
            expires_at: 100,
            last_seen_at: 90,
            authenticated_with: "password".into(),
        };
        assert_eq!(config.idle_expires_at(&session), 100);
        assert!(config.is_live(&session, 99));
        assert!(!config.is_live(&session, 100));
        let idle = StoredSession {
            last_seen_at: 10,
            ..session
        };
        assert_eq!(config.idle_expires_at(&idle), 40);
        assert!(!config.is_live(&idle, 40));
    }
}
