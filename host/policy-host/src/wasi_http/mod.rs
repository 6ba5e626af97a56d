//! The bridge from `wasi:http` to the [`egress`] gateway: the only part of outbound HTTP that
//! is about wasm. [`outgoing_handler`] defines `wasi:http/outgoing-handler.handle` for the
//! plugins; [`hooks::EgressHooks`] hands each request to the gateway under the plugin's
//! [`egress::CallerPolicy`] and maps the gateway's typed errors to `wasi:http` error codes.

pub mod hooks;
pub mod outgoing_handler;
