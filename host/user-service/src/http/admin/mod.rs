//! `/admin`: plugins, the outbox, security policies and users' sessions. Every handler takes
//! the [`super::extract::Admin`] extractor: without a configured admin token none of it exists.

pub mod outbox;
pub mod plugins;
pub mod policies;
pub mod users;
