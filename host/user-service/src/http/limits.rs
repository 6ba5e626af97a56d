//! Header limits checked on every request, so that a request over `[http] max-headers` or
//! `max-header-bytes` gets a `431` problem document rather than hyper's body-less one (hyper
//! only refuses heads beyond four times these limits; see [`crate::server`]).

use crate::problem::Problem;
use axum::{
    extract::Request,
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
};

/// The limits, copied from `[http]`.
#[derive(Debug, Clone, Copy)]
pub struct HeaderLimits {
    /// At most this many header fields.
    pub max_headers: usize,
    /// At most this many bytes of header fields in all.
    pub max_header_bytes: usize,
}

impl HeaderLimits {
    /// Middleware: refuses requests over the limits with `431 headers-too-large`.
    pub async fn enforce(self, request: Request, next: Next) -> Response {
        let headers = request.headers();
        // Names, values and the `: ` and CRLF of each line, as they came over the wire.
        let bytes: usize = headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        if headers.len() > self.max_headers || bytes > self.max_header_bytes {
            return Problem::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers-too-large",
                "The request has too many or too large header fields",
            )
            .detail(format!(
                "At most {} header fields and {} bytes of them are accepted.",
                self.max_headers, self.max_header_bytes
            ))
            .into_response();
        }
        next.run(request).await
    }
}
