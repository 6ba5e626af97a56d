//! Argon2id password hashing, off the async runtime (each hash takes tens of milliseconds by
//! design).

use argon2::{
    Argon2, PasswordHash, PasswordHasher, PasswordVerifier,
    password_hash::{SaltString, rand_core::OsRng},
};

/// Hashes `password` with Argon2id (OWASP's parameters: 19 MiB, 2 passes, 1 lane).
pub async fn hash(password: String) -> anyhow::Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|error| anyhow::anyhow!("hashing failed: {error}"))
    })
    .await?
}

/// True when `password` matches `stored`. With `stored = None` (unknown account) it still does
/// the work of a verification, so response times don't reveal which emails exist.
pub async fn verify(password: String, stored: Option<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let stored = stored.unwrap_or_else(|| DUMMY_HASH.to_owned());
        let parsed = PasswordHash::new(&stored)
            .map_err(|error| anyhow::anyhow!("stored hash unreadable: {error}"))?;
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        Ok(matches && stored != DUMMY_HASH)
    })
    .await?
}

/// An Argon2id hash of a random string nobody knows, for timing-equal misses.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$o3I3Yn/a1rFKJxHcLRxQa1b4GLpxZVNSI5HqDq1WcFk";
