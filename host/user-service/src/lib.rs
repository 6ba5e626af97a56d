//! The User Service: registration, login sessions, email verification, the account
//! endpoints, password change and reset, with the password policy,
//! breach check and CAPTCHA decided by WebAssembly plugins in an embedded [`policy_host`].
//!
//! Layers, each importing only those below it: [`app`] (start-up, serving) → [`http`]
//! (router, extractors, a module per resource) → [`domain`] (the flows) → [`store`],
//! [`flows`] (the policy checks), [`outbox`], [`outbound`], [`security_policy`]. [`state`]
//! is the shared state they all receive.

pub mod app;
pub mod client_address;
pub mod config;
pub mod domain;
pub mod email;
pub mod flows;
pub mod http;
pub mod malloc_tuning;
#[allow(
    missing_docs,
    clippy::pedantic,
    reason = "rewritten onto the egress crate in issue 10's other half, which sets its lints"
)]
pub mod outbound;
pub mod outbox;
pub mod password_checks;
pub mod passwords;
pub mod problem;
pub mod rollout;
pub mod security_policy;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod trace_context;

pub use app::{run, serve, start};
pub use config::ServiceConfig;
pub use http::router;
pub use state::AppState;
