//! Calling a captcha plugin, and refusing replayed tokens without asking the provider.

use crate::{
    bindings::captcha::exports::user_service::policy::captcha_verifier,
    decision::Decision,
    engine::PolicyEngine,
    error::PluginError,
    loaded::{LoadedPlugin, PreInstance},
    password_policy::from_wit,
    plugin_call,
};
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use std::time::Duration;

/// A CAPTCHA response to verify.
#[derive(Debug, Clone, Default)]
pub struct CaptchaInput {
    /// The token the client's widget produced.
    pub token: String,
    /// The flow it protects: `register`, `login` or `password_reset`.
    pub action: String,
    /// The client's address, when known (forwarded to the provider).
    pub remote_ip: Option<String>,
    /// Unique per attempt and reused by its retries; generated when absent.
    pub idempotency_key: Option<String>,
}

/// Tokens accepted recently, by hash: a replay is refused without a provider call. Kept per
/// replica; the provider's own single-use check remains the backstop across replicas.
pub struct AcceptedTokens {
    seen: Cache<[u8; 32], ()>,
}

impl AcceptedTokens {
    /// Remembers tokens for `window` (longer than any provider's token validity).
    pub fn new(window: Duration) -> Self {
        Self {
            seen: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(window)
                .build(),
        }
    }

    fn key(slot: &str, token: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(slot.as_bytes());
        hasher.update([0]);
        hasher.update(token.trim().as_bytes());
        hasher.finalize().into()
    }

    /// True when `token` was accepted before in `slot`.
    pub fn is_replay(&self, slot: &str, token: &str) -> bool {
        self.seen.contains_key(&Self::key(slot, token))
    }

    /// Records an accepted token.
    pub fn accept(&self, slot: &str, token: &str) {
        self.seen.insert(Self::key(slot, token), ());
    }
}

/// A fresh idempotency key: 128 random bits, hex.
pub fn new_idempotency_key() -> String {
    format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..))
}

/// Runs `plugin` on `input` in a fresh instance.
pub(crate) async fn verify(
    engine: &PolicyEngine,
    plugin: &LoadedPlugin,
    input: &CaptchaInput,
    idempotency_key: &str,
) -> Result<Decision, PluginError> {
    let size =
        input.token.len() + input.action.len() + input.remote_ip.as_ref().map_or(0, String::len);
    plugin_call::check_input_size(engine, size)?;
    let PreInstance::Captcha(pre) = &plugin.pre else {
        return Err(plugin.wrong_kind(crate::PluginKind::Captcha));
    };
    let wit_input = captcha_verifier::CaptchaInput {
        token: input.token.clone(),
        action: input.action.clone(),
        remote_ip: input.remote_ip.clone(),
        idempotency_key: idempotency_key.to_owned(),
    };
    let decision = plugin_call::run(engine, plugin, async |store| {
        let instance = pre.instantiate_async(&mut *store).await?;
        instance
            .user_service_policy_captcha_verifier()
            .call_verify(store, &wit_input)
            .await
    })
    .await?;
    from_wit(decision, engine, plugin)
}
