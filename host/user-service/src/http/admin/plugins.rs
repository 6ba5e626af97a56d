//! `/admin/plugins`: the slots and their versions, reload, rollback, and a slot's source.

use crate::{
    http::extract::{Admin, authorize_admin},
    problem::Problem,
    state::AppState,
};
use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use policy_host::{LoadError, source::PullPolicy};
use serde::Deserialize;
use serde_json::{Value, json};

/// `GET /admin/plugins`
pub async fn list(State(state): State<AppState>, _: Admin) -> Result<Response, Problem> {
    let plugins: Vec<Value> = state
        .host
        .catalog()
        .status()
        .into_iter()
        .map(|slot| {
            json!({
                "name": slot.name,
                "kind": slot.kind.world(),
                "enabled": slot.enabled,
                "version": slot.current.as_ref().map(|current| current.identity.version.to_string()),
                "sha256": slot.current.as_ref().map(|current| current.identity.sha256.to_string()),
                "loaded_at": slot.current.as_ref().and_then(|current| current.loaded_at.duration_since(std::time::UNIX_EPOCH).ok()).map(|elapsed| elapsed.as_secs()),
                "decisions_served": slot.current.as_ref().map(|current| current.decisions_served),
                "previous_version": slot.previous.as_ref().map(|previous| previous.version.to_string()),
                "last_error": slot.last_error,
                "source": slot.source.source,
                "require_signature": slot.source.require_signature,
                "pending_source": slot.source.pending,
                "origin": slot.source.origin,
                "digest": slot.current.as_ref().and_then(|current| current.identity.provenance.as_ref()).map(|provenance| provenance.digest.clone()),
                "verified_by": slot.current.as_ref().and_then(|current| current.identity.provenance.as_ref()).map(|provenance| provenance.verified_by.clone()),
            })
        })
        .collect();
    Ok(Json(json!({ "plugins": plugins })).into_response())
}

/// `POST /admin/plugins/{name}/reload`
pub async fn reload(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _: Admin,
) -> Result<Response, Problem> {
    match state.host.catalog().reload(&name).await {
        Ok(policy_host::catalog::ReloadOutcome::Swapped { from, to }) => {
            Ok(Json(json!({ "outcome": "swapped", "from": from.map(|from| from.version.to_string()), "version": to.version.to_string(), "sha256": to.sha256.to_string() })).into_response())
        }
        Ok(policy_host::catalog::ReloadOutcome::Unchanged(identity)) => {
            Ok(Json(json!({ "outcome": "unchanged", "version": identity.version.to_string(), "sha256": identity.sha256.to_string() })).into_response())
        }
        Err(policy_host::LoadError::UnknownSlot { .. }) => Err(Problem::new(StatusCode::NOT_FOUND, "unknown-plugin", "No such plugin")),
        Err(error) => Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "plugin-rejected", "The candidate was rejected; the serving version is unchanged").detail(error.to_string())),
    }
}

/// `POST /admin/plugins/{name}/rollback`
pub async fn rollback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    _: Admin,
) -> Result<Response, Problem> {
    match state.host.catalog().rollback(&name).await {
        Ok(identity) => Ok(Json(json!({ "outcome": "rolled-back", "version": identity.version.to_string(), "sha256": identity.sha256.to_string() })).into_response()),
        Err(policy_host::catalog::RollbackError::UnknownSlot(_)) => Err(Problem::new(StatusCode::NOT_FOUND, "unknown-plugin", "No such plugin")),
        Err(error) => Err(Problem::new(StatusCode::CONFLICT, "no-previous-version", "Nothing to roll back to").detail(error.to_string())),
    }
}

/// The body of `POST /admin/plugins/{name}/source`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceRequest {
    /// `file`, or `oci://registry/repository@sha256:<hex>` (or `:tag` with a pull policy).
    pub source: String,
    /// Needed with a tag: `always` or `if-not-present`.
    #[serde(rename = "pull-policy", default)]
    pub pull_policy: Option<PullPolicy>,
}

/// `POST /admin/plugins/{name}/source`: points a plugin slot at another source at run time.
///
/// The reference is validated on the request (400 when malformed, 404 for an unknown slot);
/// the pull, the signature check and the compilation run off the request path. The answer is
/// 202; the outcome shows in `GET /admin/plugins` (`pending_source` while it runs, then the new
/// `source` and `digest`, or `last_error` with the old version still serving).
pub async fn set_source(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    // Checked after the body is read, as every admin request always was.
    authorize_admin(&state, &headers)?;
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
