//! Rollout admin endpoints: `PUT /admin/plugins/{name}/desired` (upload or digest, stage,
//! share), `POST …/promote`, `POST …/abort`, `GET …/rollout` and `GET /admin/plugins/fleet`.
//!
//! They write the desired state in the database and hint the replicas; every replica (this
//! one too) applies it within a second, with the catalog's usual validation. A refused version
//! shows in the fleet with its error, and the serving version stays.

use crate::{
    http::extract::authorize_admin,
    problem::Problem,
    rollout::{
        desired_state::{StoredPlan, digest_of, is_digest},
        fleet, report,
    },
    state::AppState,
    store::{DesiredChange, DesiredRow},
};
use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use policy_host::{
    PluginKind,
    rollout::{AbortRule, StageKind},
};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

/// The body of `PUT /admin/plugins/{name}/desired`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredRequest {
    /// The component, base64: stored by its digest.
    #[serde(default)]
    pub component: Option<String>,
    /// `sha256:<hex>` of a component stored before (or of `component`, as a check).
    #[serde(default)]
    pub digest: Option<String>,
    /// `serving` (default), `shadow` or `canary`.
    #[serde(default)]
    pub stage: Option<String>,
    /// Canary: share of accounts, 0–100.
    #[serde(default)]
    pub percent: Option<f64>,
    /// Shadow: share of decisions also run on the candidate, 0–100 (default 100).
    #[serde(default, rename = "sample-percent")]
    pub sample_percent: Option<f64>,
    /// Shadow: most candidate evaluations at once (default 4).
    #[serde(default, rename = "max-concurrent")]
    pub max_concurrent: Option<u32>,
    /// Canary bucket salt (default: random, so each rollout picks its own share).
    #[serde(default)]
    pub salt: Option<String>,
    /// When the candidate is aborted automatically.
    #[serde(default)]
    pub abort: Option<AbortRule>,
    /// Settings over the slot's, for this version.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

fn invalid(kind: &str, title: &str, detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::BAD_REQUEST, kind, title).detail(detail.into())
}

fn unknown_plugin() -> Problem {
    Problem::new(StatusCode::NOT_FOUND, "unknown-plugin", "No such plugin")
}

fn database(error: impl std::fmt::Display) -> Problem {
    tracing::error!(%error, "rollout: database error");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "database-unavailable",
        "The database did not answer",
    )
}

/// `PUT /admin/plugins/{name}/desired`
pub async fn put_desired(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, Problem> {
    authorize_admin(&state, &headers)?;
    let slot = state
        .host
        .catalog()
        .slot(&name)
        .ok_or_else(unknown_plugin)?;
    let kind = slot.kind();
    let request: DesiredRequest = serde_json::from_slice(&body).map_err(|error| {
        invalid(
            "invalid-request",
            "The body must be a desired-state document",
            error.to_string(),
        )
    })?;
    let (digest, uploaded) = stored_digest(&state, &request).await?;
    share_compilation(&state, &digest, uploaded).await?;
    let settings = serde_json::to_string(&request.settings).map_err(|error| {
        invalid(
            "invalid-request",
            "Settings must be strings",
            error.to_string(),
        )
    })?;
    let stage = request.stage.as_deref().unwrap_or("serving");
    let change_stage = match stage {
        "serving" => None,
        "shadow" => Some(StageKind::Shadow),
        "canary" => Some(StageKind::Canary),
        other => {
            return Err(invalid(
                "invalid-stage",
                "The stage must be serving, shadow or canary",
                format!("got {other:?}"),
            ));
        }
    };
    let plan_text;
    let change = match change_stage {
        None => DesiredChange::Serve {
            digest: &digest,
            settings: &settings,
        },
        Some(stage_kind) => {
            // A CAPTCHA token is single-use at the vendor: a shadow would verify it a second
            // time and only learn `timeout-or-duplicate`. A canary verifies it once.
            if kind == PluginKind::Captcha && stage_kind == StageKind::Shadow {
                return Err(invalid(
                    "stage-unsupported",
                    "A CAPTCHA slot cannot shadow a candidate",
                    format!(
                        "`{name}` is a captcha slot: its tokens are single-use, so a shadow would verify each one twice; stage it as a canary"
                    ),
                ));
            }
            let percent = request.percent.unwrap_or(0.0);
            if stage_kind == StageKind::Canary
                && (request.percent.is_none() || !(0.0..=100.0).contains(&percent))
            {
                return Err(invalid(
                    "invalid-percent",
                    "A canary needs a percent between 0 and 100",
                    format!("got {:?}", request.percent),
                ));
            }
            let sample_percent = request.sample_percent.unwrap_or(100.0);
            if !(0.0..=100.0).contains(&sample_percent) {
                return Err(invalid(
                    "invalid-percent",
                    "sample-percent must be between 0 and 100",
                    format!("got {sample_percent}"),
                ));
            }
            let salt = match request.salt.clone() {
                Some(salt) => salt,
                None => crate::store::random_id().map_err(|error| {
                    Problem::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "No randomness for a salt",
                    )
                    .detail(error.to_string())
                })?,
            };
            plan_text = serde_json::to_string(&StoredPlan {
                stage: stage_kind,
                percent,
                salt,
                sample_percent,
                max_concurrent: request.max_concurrent.unwrap_or(4).max(1),
                abort: request.abort.unwrap_or_default(),
            })
            .map_err(|error| invalid("invalid-request", "Unusable plan", error.to_string()))?;
            DesiredChange::Stage {
                digest: &digest,
                settings: &settings,
                stage,
                plan: &plan_text,
            }
        }
    };
    let row = state
        .store
        .change_desired(&name, change, None)
        .await
        .map_err(database)?
        .ok_or_else(|| database("the desired state was not written"))?;
    hint(&state, &name).await;
    Ok((StatusCode::ACCEPTED, Json(desired_json(&row))).into_response())
}

/// Compiles the component once, here, and stores the signed artifact before the desired state
/// names it, so that the other replicas (hinted next) deserialize instead of compiling. A no-op
/// without an artifact key.
async fn share_compilation(
    state: &AppState,
    digest: &str,
    uploaded: Option<Vec<u8>>,
) -> Result<(), Problem> {
    let artifacts = state.rollout.artifacts();
    if !artifacts.enabled() {
        return Ok(());
    }
    let bytes = match uploaded {
        Some(bytes) => bytes,
        None => match state.store.component(digest).await.map_err(database)? {
            Some(bytes) => bytes,
            None => return Ok(()),
        },
    };
    artifacts
        .publish(digest.trim_start_matches("sha256:"), bytes)
        .await;
    Ok(())
}

/// The digest the request names, after storing its component when it carries one (then also
/// returned).
async fn stored_digest(
    state: &AppState,
    request: &DesiredRequest,
) -> Result<(String, Option<Vec<u8>>), Problem> {
    match (&request.component, &request.digest) {
        (Some(encoded), named) => {
            let bytes = STANDARD.decode(encoded.as_bytes()).map_err(|error| {
                invalid(
                    "invalid-component",
                    "component must be base64",
                    error.to_string(),
                )
            })?;
            let limit = state.config.rollout.max_component_bytes;
            if bytes.len() > limit {
                return Err(invalid(
                    "component-too-large",
                    "The component is too large",
                    format!("{} bytes; at most {limit}", bytes.len()),
                ));
            }
            let digest = digest_of(&bytes);
            if let Some(named) = named
                && *named != digest
            {
                return Err(invalid(
                    "digest-mismatch",
                    "The component does not hash to the digest given",
                    format!("given {named}, computed {digest}"),
                ));
            }
            state
                .store
                .put_component(&digest, &bytes)
                .await
                .map_err(database)?;
            Ok((digest, Some(bytes)))
        }
        (None, Some(digest)) => {
            if !is_digest(digest) {
                return Err(invalid(
                    "invalid-digest",
                    "A digest is sha256: and 64 lower-case hex digits",
                    digest.clone(),
                ));
            }
            if !state.store.has_component(digest).await.map_err(database)? {
                return Err(Problem::new(
                    StatusCode::NOT_FOUND,
                    "unknown-component",
                    "No component is stored under this digest; upload it",
                ));
            }
            Ok((digest.clone(), None))
        }
        (None, None) => Err(invalid(
            "invalid-request",
            "Give a component or a digest",
            "neither `component` nor `digest` was given",
        )),
    }
}

/// Wakes this replica's follower and hints the others.
async fn hint(state: &AppState, slot: &str) {
    state.rollout.hint.notify_one();
    if state.config.database_url.starts_with("postgres")
        && let Err(error) = state.store.notify_desired_changed(slot).await
    {
        tracing::warn!(%error, "rollout hint not sent; replicas apply at their next poll");
    }
}

fn desired_json(row: &DesiredRow) -> serde_json::Value {
    json!({
        "plugin": row.slot,
        "revision": row.revision,
        "stage": row.stage,
        "serving_digest": row.serving_digest,
        "candidate_digest": row.candidate_digest,
        "plan": serde_json::from_str::<serde_json::Value>(&row.plan).unwrap_or_default(),
        "note": row.note,
        "status": "/admin/plugins/fleet",
    })
}

/// `POST /admin/plugins/{name}/promote`
pub async fn promote(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    change_candidate(state, headers, name, DesiredChange::Promote).await
}

/// `POST /admin/plugins/{name}/abort`
pub async fn abort(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    change_candidate(
        state,
        headers,
        name,
        DesiredChange::Abort {
            note: "aborted by an operator",
        },
    )
    .await
}

async fn change_candidate(
    state: AppState,
    headers: HeaderMap,
    name: String,
    change: DesiredChange<'_>,
) -> Result<Response, Problem> {
    authorize_admin(&state, &headers)?;
    state
        .host
        .catalog()
        .slot(&name)
        .ok_or_else(unknown_plugin)?;
    let row = state
        .store
        .change_desired(&name, change, None)
        .await
        .map_err(database)?
        .ok_or_else(|| {
            Problem::new(
                StatusCode::CONFLICT,
                "no-candidate",
                "The plugin has no staged candidate",
            )
        })?;
    hint(&state, &name).await;
    Ok((StatusCode::ACCEPTED, Json(desired_json(&row))).into_response())
}

/// `GET /admin/plugins/{name}/rollout`
pub async fn rollout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, Problem> {
    authorize_admin(&state, &headers)?;
    state
        .host
        .catalog()
        .slot(&name)
        .ok_or_else(unknown_plugin)?;
    let desired = state.store.desired(&name).await.map_err(database)?;
    let rows = state.store.fleet().await.map_err(database)?;
    let report = report::report(
        &name,
        desired.as_ref(),
        &rows,
        state.rollout.replica(),
        state.host.catalog().staging(),
    );
    Ok(Json(report).into_response())
}

/// `GET /admin/plugins/fleet`
pub async fn fleet(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    authorize_admin(&state, &headers)?;
    let desired = state.store.desired_all().await.map_err(database)?;
    let rows = state.store.fleet().await.map_err(database)?;
    let replicas = fleet::view(
        &rows,
        &desired,
        crate::store::now_micros() / 1000,
        state.config.rollout.lag_after_ms,
    );
    Ok(Json(json!({
        "desired": desired.iter().map(desired_json).collect::<Vec<_>>(),
        "replicas": replicas,
        "lagging": replicas.iter().filter(|replica| replica.lagging).map(|replica| &replica.replica).collect::<Vec<_>>(),
        "failed": replicas.iter().filter(|replica| replica.failed).map(|replica| &replica.replica).collect::<Vec<_>>(),
    }))
    .into_response())
}
