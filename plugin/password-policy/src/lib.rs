//! The password-policy plugin: NIST SP 800-63B rev. 4 rules for new passwords.
//!
//! The rules ([`rules::evaluate`]) are plain Rust and compile natively, so they are unit-tested
//! and benchmarked without wasm. Built for `wasm32-wasip2`, the crate is also a WASI 0.2
//! component of the `user-service:policy/password-policy` world (see `component.rs`).

pub mod blocklist;
pub mod normalize;
pub mod patterns;
pub mod rules;
pub mod settings;
pub mod words;

#[cfg(target_arch = "wasm32")]
mod component;

/// The name this plugin reports to the host.
pub const PLUGIN_NAME: &str = "password-policy";

/// The version this plugin reports to the host (the crate's version).
/// `PLUGIN_VERSION_OVERRIDE` at build time replaces it (the tests build a "next" version that way).
pub const PLUGIN_VERSION: &str = match option_env!("PLUGIN_VERSION_OVERRIDE") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};
