//! The one constructor of outbox events: `{ id, type, version, occurredAt, data, traceparent }`,
//! with the request's metadata as `data.request` (the sinks emit it as a CloudEvent, see
//! [`crate::outbox::cloudevents`]).

use crate::{
    problem::Problem,
    store::{OutboxEvent, now, random_id},
};
use serde_json::{Value, json};

/// Who asked for a state change, recorded in its event (`data.request`).
#[derive(Debug, Clone, Default)]
pub struct RequestMetadata {
    /// The client's address.
    pub client_ip: String,
    /// Its `User-Agent`, cut to 256 characters.
    pub user_agent: Option<String>,
    /// Its `X-Request-Id`, cut to 256 characters.
    pub request_id: Option<String>,
    /// The request's W3C trace context (`crate::trace_context`), stored with its events.
    pub traceparent: Option<String>,
}

impl RequestMetadata {
    fn to_json(&self) -> Value {
        json!({
            "clientIp": self.client_ip,
            "userAgent": self.user_agent,
            "requestId": self.request_id,
        })
    }
}

/// An outbox event of `event_type` about `aggregate_id`, caused by `request`.
pub(crate) fn event(
    event_type: &str,
    aggregate_id: &str,
    mut data: Value,
    request: &RequestMetadata,
) -> Result<OutboxEvent, Problem> {
    let id = random_id().map_err(Problem::internal)?;
    data["request"] = request.to_json();
    let mut payload =
        json!({ "id": id, "type": event_type, "version": 1, "occurredAt": now(), "data": data });
    if let Some(traceparent) = &request.traceparent {
        payload["traceparent"] = Value::from(traceparent.as_str());
    }
    Ok(OutboxEvent {
        id,
        event_type: event_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
        payload,
    })
}
