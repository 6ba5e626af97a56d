//! The integration tests, one binary: a module per area, so wasmtime, axum and sqlx are linked
//! once rather than once per file. Run one area with its module path as a filter, e.g.
//! `cargo test --release -p harness --test all sessions::`.
//!
//! Tests that need a process of their own (a global `tracing` subscriber, a service killed with
//! SIGKILL) start this binary again for one test: see `harness::process`.

mod breach_check;
mod broker;
mod captcha;
mod discovery;
mod distribution;
mod durability;
mod egress;
mod fault_matrix;
mod hostile;
mod hot_swap;
mod otlp;
mod outbound;
mod password_policy;
mod public_api;
mod rollout;
mod schema_adoption;
mod service;
mod sessions;
mod shared_artifacts;
mod storage;
mod trace_context;
mod workload_identity;
