//! The egress calls one decision made, for its decision-log line: where (the matched
//! destination as configured, never the request's own path or query: a breach check's range
//! prefix or a token would be there), how it ended, whether the cache answered, how long it
//! took. Collected by the decision's [`crate::wasi_http::hooks::EgressHooks`], which pick up
//! the collector of the task the decision runs in ([`collect`]) when its store is made.

use egress::{EgressError, Rule};
use serde::Serialize;
use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

/// Most calls kept per decision: a plugin looping on requests can't grow a log line without
/// bound (the rest are counted in `dropped`).
pub const MAX_CALLS_PER_DECISION: usize = 16;

/// One egress call of a decision. Carries no input and no response body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EgressCall {
    /// `scheme://host:port` plus the path prefix of the allowlist entry the request matched
    /// (configuration, not the request's path: that can carry a hash prefix); just the
    /// request's `scheme://host:port` when no entry matched.
    pub destination: String,
    /// The request method.
    pub method: String,
    /// The upstream's status code, when there was an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why there was no answer (`denied`, `breaker-open`, `deadline-exceeded`, `connect`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// True when the gateway's cache (or a concurrent identical call's single flight)
    /// answered, so this call made no upstream request of its own.
    pub cached: bool,
    /// Time the gateway took, in microseconds.
    pub latency_us: u64,
}

impl EgressCall {
    /// The record of a call to `uri` that `rule` admitted (if any), ended with `result` (a
    /// status, or the failure's [`error_kind`]).
    pub fn new(
        method: &http::Method,
        uri: &http::Uri,
        rule: Option<&Rule>,
        result: Result<http::StatusCode, &'static str>,
        cached: bool,
        latency: Duration,
    ) -> Self {
        let destination = match rule {
            Some(rule) => format!(
                "{}{}",
                rule.destination.origin(),
                rule.destination.path_prefix
            ),
            None => origin_of(uri),
        };
        let (status, error) = match result {
            Ok(status) => (Some(status.as_u16()), None),
            Err(error) => (None, Some(error)),
        };
        Self {
            destination,
            method: method.as_str().to_owned(),
            status,
            error,
            cached,
            latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
        }
    }
}

/// `scheme://host:port` of `uri` (default port filled in), without path or query.
fn origin_of(uri: &http::Uri) -> String {
    match egress::allowlist::target_of(uri) {
        Some((scheme, host, port)) => format!("{scheme}://{host}:{port}"),
        None => "invalid".to_owned(),
    }
}

/// A stable, short name for each gateway failure.
pub fn error_kind(error: &EgressError) -> &'static str {
    match error {
        EgressError::Denied(_) => "denied",
        EgressError::AddressRefused(_) => "address-refused",
        EgressError::Resolve(_) => "resolve",
        EgressError::BreakerOpen { .. } => "breaker-open",
        EgressError::RequestTooLarge { .. } => "request-too-large",
        EgressError::DeadlineExceeded => "deadline-exceeded",
        EgressError::ContentEncoded { .. } => "content-encoded",
        EgressError::Attempt(attempt) => attempt.kind(),
    }
}

/// The calls of one decision so far, shared by its hooks and whoever reads them after.
#[derive(Debug, Clone, Default)]
pub struct EgressCalls {
    inner: Arc<Mutex<CallList>>,
}

#[derive(Debug, Default)]
struct CallList {
    calls: Vec<EgressCall>,
    dropped: u64,
}

impl EgressCalls {
    /// Adds `call` (or counts it as dropped past [`MAX_CALLS_PER_DECISION`]).
    pub fn record(&self, call: EgressCall) {
        let mut list = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if list.calls.len() < MAX_CALLS_PER_DECISION {
            list.calls.push(call);
        } else {
            list.dropped += 1;
        }
    }

    /// The calls recorded, in order, and how many were dropped.
    pub fn take(&self) -> (Vec<EgressCall>, u64) {
        let mut list = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (
            std::mem::take(&mut list.calls),
            std::mem::take(&mut list.dropped),
        )
    }
}

tokio::task_local! {
    static COLLECTOR: EgressCalls;
}

/// Runs `decision` and returns the egress calls its stores made (those created while it ran).
pub async fn collect<F: Future>(decision: F) -> (F::Output, Vec<EgressCall>, u64) {
    let calls = EgressCalls::default();
    let output = COLLECTOR.scope(calls.clone(), decision).await;
    let (calls, dropped) = calls.take();
    (output, calls, dropped)
}

/// The collector of the decision running in this task, if one is collecting.
pub fn current() -> Option<EgressCalls> {
    COLLECTOR.try_with(Clone::clone).ok()
}
