//! The User Service: registration, login sessions, email verification, the account
//! endpoints, password change and reset, with the password policy,
//! breach check and CAPTCHA decided by WebAssembly plugins in an embedded [`policy_host`].

pub mod accounts;
pub mod admin_outbound;
pub mod admin_plugin_source;
pub mod api;
pub mod app;
pub mod client_address;
pub mod config;
pub mod email;
pub mod email_verification;
pub mod flows;
pub mod malloc_tuning;
pub mod openapi;
pub mod outbound;
pub mod outbox;
pub mod password_checks;
pub mod passwords;
pub mod problem;
pub mod request_limits;
pub mod security_policy;
pub mod server;
pub mod sessions;
pub mod store;
pub mod telemetry;
pub mod throttle;
pub mod trace_context;

pub use app::{AppState, router, serve, start};
pub use config::ServiceConfig;
