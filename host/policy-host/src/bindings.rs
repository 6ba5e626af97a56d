//! Host-side bindings generated from `wit/` by `wasmtime::component::bindgen!`.
//!
//! Imports (`settings`, `logging`) are plain synchronous host functions; exports are called
//! asynchronously, because the network worlds reach `wasi:http` through async host code and
//! one calling convention for every kind keeps the runtime simple.

/// The `password-policy` world.
pub mod password_policy {
    wasmtime::component::bindgen!({
        world: "password-policy",
        path: "../../wit",
        exports: { default: async },
    });
}

pub use password_policy::user_service::policy::{logging, settings, types};
