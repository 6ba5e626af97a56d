//! Admin endpoints for the service's outbound side: the outbox (counts, dead letters, replay)
//! and the security policies in force. All need the admin bearer token.

use crate::{api::authorize, app::AppState, problem::Problem};
use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// Most dead letters listed at once.
const DEAD_LETTER_PAGE: i64 = 500;

/// `GET /admin/outbox`: how many events are pending, dead and delivered.
pub async fn outbox_status(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    let (pending, dead, delivered) = state.store.outbox_counts().await?;
    Ok(
        Json(json!({ "pending": pending, "deadLetters": dead, "delivered": delivered }))
            .into_response(),
    )
}

/// `GET /admin/outbox/dead-letters`: events that ran out of attempts, oldest first.
pub async fn dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    let letters = state.store.dead_letters(DEAD_LETTER_PAGE).await?;
    let items: Vec<_> = letters
        .into_iter()
        .map(|letter| {
            json!({
                "id": letter.event.id,
                "type": letter.event.event_type,
                "aggregateId": letter.event.aggregate_id,
                "attempts": letter.attempts,
                "lastError": letter.last_error,
                "deadAt": letter.dead_at,
                "deliveredTo": letter.sinks_done.split(',').filter(|sink| !sink.is_empty()).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "deadLetters": items })).into_response())
}

/// `POST /admin/outbox/dead-letters/{id}/replay`: puts one dead letter back in the queue.
pub async fn replay_dead_letter(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    if state.store.replay_dead_letters(Some(&id)).await? == 0 {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "no-such-dead-letter",
            "No dead letter has this id",
        ));
    }
    state.outbox_waker.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "replayed": 1 }))).into_response())
}

/// `POST /admin/outbox/dead-letters/replay`: puts every dead letter back in the queue.
pub async fn replay_all_dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    let replayed = state.store.replay_dead_letters(None).await?;
    state.outbox_waker.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "replayed": replayed }))).into_response())
}

/// `GET /admin/security-policies`: the policy in force, where it came from, the last error.
pub async fn security_policies(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    authorize(&state, &headers)?;
    Ok(Json(state.security.status()).into_response())
}
