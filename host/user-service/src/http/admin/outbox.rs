//! `/admin/outbox`: counts, dead letters, replay.

use crate::{http::extract::Admin, problem::Problem, state::AppState};
use axum::{
    Json,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

/// Most dead letters listed at once.
const DEAD_LETTER_PAGE: i64 = 500;

/// `GET /admin/outbox`: how many events are pending, dead and delivered.
pub async fn status(State(state): State<AppState>, _: Admin) -> Result<Response, Problem> {
    let (pending, dead, delivered) = state.store.outbox_counts().await?;
    Ok(
        Json(json!({ "pending": pending, "deadLetters": dead, "delivered": delivered }))
            .into_response(),
    )
}

/// `GET /admin/outbox/dead-letters`: events that ran out of attempts, oldest first.
pub async fn dead_letters(State(state): State<AppState>, _: Admin) -> Result<Response, Problem> {
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
                "deadAt": letter.dead_at_micros.map(|micros| micros / 1_000_000),
                "deliveredTo": letter.sinks_done,
            })
        })
        .collect();
    Ok(Json(json!({ "deadLetters": items })).into_response())
}

/// `POST /admin/outbox/dead-letters/{id}/replay`: puts one dead letter back in the queue.
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    _: Admin,
) -> Result<Response, Problem> {
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
pub async fn replay_all(State(state): State<AppState>, _: Admin) -> Result<Response, Problem> {
    let replayed = state.store.replay_dead_letters(None).await?;
    state.outbox_waker.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "replayed": replayed }))).into_response())
}
