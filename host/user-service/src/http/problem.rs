//! Problems on the wire: [`Problem`] as a response, and the middleware and fallbacks that make
//! every error response a problem document.

use crate::problem::{Problem, for_status};
use axum::{
    Json,
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            Json(self),
        )
            .into_response()
    }
}

/// Middleware: an error response (4xx, 5xx) without a JSON body becomes the problem document
/// for its status, keeping its headers (a 405's `Allow`). JSON error bodies (problems, and
/// `/readyz`'s documented 503) pass unchanged.
pub async fn ensure_problem(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("application/problem+json")
        });
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    let problem = for_status(status);
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}

/// For `CatchPanicLayer`: a handler that panicked answers a 500 problem.
pub fn from_panic(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a handler panicked".to_owned());
    Problem::internal(format!("panic: {message}")).into_response()
}

/// `405` for a known path with another method (the router adds `Allow`).
pub async fn method_not_allowed() -> Problem {
    for_status(StatusCode::METHOD_NOT_ALLOWED)
}

/// Any unknown path: `404`.
pub async fn not_found() -> Problem {
    for_status(StatusCode::NOT_FOUND)
}
