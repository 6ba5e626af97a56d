//! The policy host: runs the User Service's policy plugins (WASI 0.2 components) in wasmtime.
//!
//! - [`engine::PolicyEngine`] owns the one `wasmtime::Engine` (pooling allocator, copy-on-write
//!   memory images, epoch interruption), the per-kind linkers and the epoch ticker.
//! - [`catalog::Catalog`] keeps one slot per configured plugin: the version serving, the one
//!   before it (for rollback), and the last load error. Candidates are compiled and validated
//!   off the hot path, then swapped atomically; in-flight decisions finish on the old version.
//! - [`source`] fetches candidates from the plugin directory or an OCI registry and checks
//!   their signatures before anything is compiled.
//! - [`wasi_http`] routes every `wasi:http` request of a plugin through the [`egress`]
//!   gateway.
//! - [`watcher`] turns file changes in the plugin directory into reloads.
//! - [`PolicyHost`] is what callers use: one method per decision kind, returning the
//!   decision together with the identity of the plugin that made it (or the fail policy that
//!   stood in for it).
//!
//! Every decision runs in a fresh instance with a deadline and a memory cap; see
//! [`limits::RuntimeLimits`].

pub mod artifact_cache;
pub mod bindings;
pub mod breach_check;
pub mod captcha;
pub mod catalog;
pub mod config;
pub mod decision;
pub mod engine;
pub mod error;
pub mod fail_policy;
pub mod kind;
pub mod limits;
pub mod loaded;
pub mod password_policy;
mod plugin_call;
pub mod source;
pub mod store_state;
pub mod wasi_http;
pub mod watcher;

mod host;

/// The egress gateway (its own crate): re-exported for the configuration types the host's
/// settings are made of.
pub use ::egress;

pub use breach_check::BreachOutcome;
pub use captcha::CaptchaInput;
pub use config::{HostConfig, PluginConfig};
pub use decision::{
    Attribute, AttributeValue, Decision, DecisionRecord, Finding, PluginIdentity, Verdict,
};
pub use error::{LoadError, PluginError};
pub use fail_policy::FailPolicy;
pub use host::{BreachRecord, PolicyHost};
pub use kind::PluginKind;
pub use password_policy::PasswordInput;
