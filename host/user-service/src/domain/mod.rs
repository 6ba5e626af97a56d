//! The flows' business logic: registration, login, password change and reset, sessions, email
//! verification and the account. It knows nothing of HTTP frameworks: the `http` layer
//! extracts a request into the plain inputs here and shapes what comes back into a response.
//! Failures are [`crate::problem::Problem`]s, which say what the client is told.

pub mod accounts;
pub mod email_verification;
pub mod events;
pub mod login;
pub mod passwords;
pub mod registration;
pub mod sessions;

use crate::{
    email::{self, Email},
    problem::Problem,
};
use std::net::IpAddr;

pub use events::RequestMetadata;

/// Who is asking: the client's address (throttles, CAPTCHA) and what its events record.
pub struct Caller {
    /// The client's address (see [`crate::client_address`]).
    pub client: IpAddr,
    /// Recorded in the events the request causes.
    pub metadata: RequestMetadata,
}

/// Longest display name accepted, in bytes.
pub const MAX_DISPLAY_NAME_BYTES: usize = 200;

/// Canonicalises an email address (see [`crate::email`]); `400 invalid-email` when refused.
pub fn canonical_email(typed: &str) -> Result<Email, Problem> {
    email::canonicalize(typed).map_err(|error| {
        Problem::bad_request(
            "invalid-email",
            format!("The email address is not valid: {error}."),
        )
    })
}

/// A display name as stored: trimmed, `None` when empty; `400` when longer than
/// [`MAX_DISPLAY_NAME_BYTES`].
pub fn display_name(typed: Option<String>) -> Result<Option<String>, Problem> {
    let name = typed
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty());
    if name
        .as_ref()
        .is_some_and(|name| name.len() > MAX_DISPLAY_NAME_BYTES)
    {
        return Err(Problem::bad_request(
            "invalid-display-name",
            "The display name is longer than 200 bytes.",
        ));
    }
    Ok(name)
}
