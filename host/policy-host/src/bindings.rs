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

/// The `breach-check` world: shares the policy interfaces with `password_policy` and takes
/// `wasi:http` from wasmtime-wasi-http.
pub mod breach_check {
    wasmtime::component::bindgen!({
        world: "breach-check",
        path: "../../wit",
        exports: { default: async },
        with: {
            "user-service:policy/types": super::password_policy::user_service::policy::types,
            "user-service:policy/settings": super::password_policy::user_service::policy::settings,
            "user-service:policy/logging": super::password_policy::user_service::policy::logging,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

/// The `captcha` world: like `breach_check`, with the `captcha-verifier` export.
pub mod captcha {
    wasmtime::component::bindgen!({
        world: "captcha",
        path: "../../wit",
        exports: { default: async },
        with: {
            "user-service:policy/types": super::password_policy::user_service::policy::types,
            "user-service:policy/settings": super::password_policy::user_service::policy::settings,
            "user-service:policy/logging": super::password_policy::user_service::policy::logging,
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}
