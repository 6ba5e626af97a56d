//! The captcha plugin: one decision over Google reCAPTCHA (v2 and v3), hCaptcha and Cloudflare
//! Turnstile, from the provider's `siteverify` answer.
//!
//! The provider secret never enters the plugin: the form it posts carries a placeholder
//! (`{{secret:NAME}}`) that the host's egress gateway replaces for the provider's destination
//! only. Pure parts ([`provider`], [`settings`], [`verdict`], [`form`], [`timestamp`]) compile
//! natively for tests; `component.rs` binds them to the `captcha` world on wasm.

pub mod form;
pub mod provider;
pub mod settings;
pub mod timestamp;
pub mod verdict;

#[cfg(target_arch = "wasm32")]
mod component;

/// The name this plugin reports to the host.
pub const PLUGIN_NAME: &str = "captcha";
/// The version this plugin reports to the host.
pub const PLUGIN_VERSION: &str = env!("CARGO_PKG_VERSION");
