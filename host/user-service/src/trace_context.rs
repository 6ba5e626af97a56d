//! W3C Trace Context: every request belongs to a trace. An incoming valid `traceparent` makes
//! the request a child span of the caller's; otherwise a new trace starts. The trace is
//!
//! - logged: every line written while the request is served carries `trace_id` and `span_id`
//!   (the `request` span);
//! - answered: the response has the request's `traceparent`;
//! - stored with each outbox event (the CloudEvents `traceparent` extension) and sent on the
//!   calls it causes: the Notification Service (`notification-email`), HTTP event sinks, and
//!   the token endpoint when a token is fetched for them;
//! - sent on plugin egress only to destinations that opt in
//!   (`[plugins.egress] trace-context-destinations`; see [`policy_host::egress::trace`]).
//!
//! Calls not caused by a request (the Configuration Service refresh) start a trace of their own.

use axum::{extract::Request, middleware::Next, response::Response};
use tracing::Instrument as _;

/// One span of a W3C trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits, not all zero.
    pub trace_id: String,
    /// This span's id: 16 lower-case hex digits, not all zero.
    pub span_id: String,
    /// The caller's span, when the request came with a `traceparent`.
    pub parent_span_id: Option<String>,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// A new trace (sampled).
    pub fn root() -> Self {
        Self {
            trace_id: random_hex::<16>(),
            span_id: random_hex::<8>(),
            parent_span_id: None,
            flags: 1,
        }
    }

    /// A child span of `traceparent` when it is a valid version-00 header, else a new trace.
    pub fn from_header(traceparent: Option<&str>) -> Self {
        match traceparent.and_then(parse) {
            Some((trace_id, parent, flags)) => Self {
                trace_id,
                span_id: random_hex::<8>(),
                parent_span_id: Some(parent),
                flags,
            },
            None => Self::root(),
        }
    }

    /// A new span in the same trace, whose parent is this one.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: random_hex::<8>(),
            parent_span_id: Some(self.span_id.clone()),
            flags: self.flags,
        }
    }

    /// The `traceparent` header value naming this span.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, self.flags)
    }
}

/// `(trace id, parent id, flags)` of a `traceparent` (version 00, or a later version read as
/// 00 as the specification asks), or `None` when it is invalid.
pub fn parse(traceparent: &str) -> Option<(String, String, u8)> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let trace_id = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let hex = |text: &str, len: usize| {
        text.len() == len
            && text
                .bytes()
                .all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f'))
    };
    let valid = hex(version, 2)
        && version != "ff"
        && (version != "00" || parts.next().is_none())
        && hex(trace_id, 32)
        && trace_id.bytes().any(|byte| byte != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|byte| byte != b'0')
        && hex(flags, 2);
    if !valid {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace_id.to_owned(), parent.to_owned(), flags))
}

fn random_hex<const N: usize>() -> String {
    loop {
        let mut bytes = [0u8; N];
        // Ids need to be unique, not secret: fall back to fastrand if the OS refuses.
        if getrandom::fill(&mut bytes).is_err() {
            for byte in &mut bytes {
                *byte = fastrand::u8(..);
            }
        }
        if bytes.iter().any(|byte| *byte != 0) {
            return hex::encode(bytes);
        }
    }
}

/// Middleware: the request's [`TraceContext`] in its extensions, its log lines in a `request`
/// span carrying the ids, plugin egress told the trace, and `traceparent` on the response.
pub async fn trace_request(mut request: Request, next: Next) -> Response {
    let incoming = request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok());
    let context = TraceContext::from_header(incoming);
    let traceparent = context.traceparent();
    let span = tracing::info_span!(
        "request",
        trace_id = %context.trace_id,
        span_id = %context.span_id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    crate::telemetry::join_trace(&span, &context);
    request.extensions_mut().insert(context);
    let mut response = policy_host::egress::trace::TRACEPARENT
        .scope(traceparent.clone(), next.run(request).instrument(span))
        .await;
    if let Ok(value) = http::HeaderValue::from_str(&traceparent) {
        response.headers_mut().insert("traceparent", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_continued_and_an_invalid_one_replaced() {
        let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let context = TraceContext::from_header(Some(incoming));
        assert_eq!(context.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(context.parent_span_id.as_deref(), Some("b7ad6b7169203331"));
        assert_ne!(context.span_id, "b7ad6b7169203331");
        assert!(parse(&context.traceparent()).is_some());
        for bad in [
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "garbage",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
            assert_ne!(
                TraceContext::from_header(Some(bad)).trace_id,
                "0af7651916cd43dd8448eb211c80319c"
            );
        }
    }
}
