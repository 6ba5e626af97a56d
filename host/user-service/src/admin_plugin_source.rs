//! `POST /admin/plugins/{name}/source`: points a plugin slot at another source at run time.
//!
//! The reference is validated on the request (400 when malformed, 404 for an unknown slot);
//! the pull, the signature check and the compilation run off the request path. The answer is
//! 202; the outcome shows in `GET /admin/plugins` (`pending_source` while it runs, then the new
//! `source` and `digest`, or `last_error` with the old version still serving).

use crate::{api::authorize, app::AppState, problem::Problem};
use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use policy_host::{LoadError, source::PullPolicy};
use serde::Deserialize;
use serde_json::json;

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRequest {
    /// `file`, or `oci://registry/repository@sha256:<hex>` (or `:tag` with a pull policy).
    pub source: String,
    /// Needed with a tag: `always` or `if-not-present`.
    #[serde(rename = "pull-policy", default)]
    pub pull_policy: Option<PullPolicy>,
}

/// `POST /admin/plugins/{name}/source`
pub async fn set_source(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    let request: SourceRequest = serde_json::from_slice(&body).map_err(|error| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "The body must be {\"source\": \"oci://…\"}",
        )
        .detail(error.to_string())
    })?;
    let catalog = state.host.catalog().clone();
    let source = match catalog.parse_source(&name, &request.source, request.pull_policy) {
        Ok(source) => source,
        Err(LoadError::UnknownSlot { .. }) => {
            return Err(Problem::new(
                StatusCode::NOT_FOUND,
                "unknown-plugin",
                "No such plugin",
            ));
        }
        Err(error) => {
            return Err(Problem::new(
                StatusCode::BAD_REQUEST,
                "invalid-source",
                "The source is not a usable reference",
            )
            .detail(error.to_string()));
        }
    };
    let described = source.describe();
    let slot = name.clone();
    tokio::spawn(async move {
        // The outcome (and any error) is kept in the slot's status and logged by the catalog.
        let _ = catalog.set_source(&slot, source).await;
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "outcome": "accepted", "plugin": name, "source": described, "status": "/admin/plugins" })),
    )
        .into_response())
}
