//! Errors as `application/problem+json` (RFC 9457), each with a stable `type`, from every
//! layer: the domain and the handlers return [`Problem`]s; `crate::http::problem` renders
//! them and turns any other error response (axum's own rejections, the method router's 405,
//! a panic's 500) into one.

use http::StatusCode;
use policy_host::Finding;
use serde::Serialize;

/// A problem response.
#[derive(Debug, Serialize)]
pub struct Problem {
    /// A stable URI naming the kind of problem, e.g. `urn:user-service:problem:weak-password`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, human-readable summary.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// This occurrence, explained.
    pub detail: Option<String>,
    /// Every policy finding (code + guidance), when a policy refused.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

impl Problem {
    /// A problem of this status, kind and title.
    pub fn new(status: StatusCode, kind: &str, title: &str) -> Self {
        Self {
            kind: format!("urn:user-service:problem:{kind}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: None,
            findings: Vec::new(),
        }
    }

    /// With this detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// With these findings.
    pub fn findings(mut self, findings: Vec<Finding>) -> Self {
        self.findings = findings;
        self
    }

    /// A 400 of this kind.
    pub fn bad_request(kind: &str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, kind, "The request is invalid").detail(detail)
    }

    /// A 500 that logs `error` and tells the client nothing more.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(%error, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Something went wrong on our side",
        )
    }
}

/// The problem for an error response some layer produced without one, by status.
pub fn for_status(status: StatusCode) -> Problem {
    let (kind, title) = match status {
        StatusCode::BAD_REQUEST => ("bad-request", "The request is malformed"),
        StatusCode::NOT_FOUND => ("not-found", "Not found"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method-not-allowed",
            "This method is not allowed here; see `Allow`",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("body-too-large", "The request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported-media-type", "Send JSON"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers-too-large",
            "The request has too many or too large header fields",
        ),
        StatusCode::INTERNAL_SERVER_ERROR => ("internal", "Something went wrong on our side"),
        status if status.is_client_error() => ("bad-request", "The request cannot be served"),
        _ => ("unavailable", "The service cannot answer this now"),
    };
    Problem::new(status, kind, title)
}

impl From<sqlx::Error> for Problem {
    fn from(error: sqlx::Error) -> Self {
        Self::internal(format!("database: {error}"))
    }
}
