//! CloudEvents 1.0: the one place that turns a stored outbox event into what the sinks emit.
//!
//! The outbox stores the event as the request wrote it (`{ id, type, version, occurredAt,
//! data, traceparent? }`, built by the one event constructor in `domain/events.rs`); every sink renders it
//! here at delivery time, so rows written before an upgrade are emitted in the same format.
//!
//! - **Structured mode** (file, NATS, HTTP by default): one JSON object with the context
//!   attributes beside `data`, media type `application/cloudevents+json`.
//! - **Binary mode** (HTTP, `mode = "binary"`): the attributes as `ce-*` headers, `data` as
//!   the body (`application/json`), and the trace context as the plain `traceparent` header
//!   (the CloudEvents Distributed Tracing extension's binding).

use crate::store::OutboxEvent;
use serde_json::{Value, json};

/// The CloudEvents version emitted.
pub const SPEC_VERSION: &str = "1.0";
/// Media type of a structured-mode event.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";
/// Media type of `data`.
pub const DATA_CONTENT_TYPE: &str = "application/json";

/// `event` as a structured-mode CloudEvent from `source` (a URI reference naming this
/// service, `[events] source`).
pub fn structured(event: &OutboxEvent, source: &str) -> Value {
    let mut cloud_event = json!({
        "specversion": SPEC_VERSION,
        "id": event.id,
        "source": source,
        "type": event.event_type,
        "subject": event.aggregate_id,
        "time": time(event),
        "datacontenttype": DATA_CONTENT_TYPE,
        "data": event.payload.get("data").cloned().unwrap_or(Value::Null),
    });
    if let Some(traceparent) = traceparent(event) {
        cloud_event["traceparent"] = Value::from(traceparent);
    }
    cloud_event
}

/// The context attributes of `event` as binary-mode HTTP headers (`ce-*`, and `traceparent`
/// when the event carries one); the body is [`data`].
pub fn binary_headers(event: &OutboxEvent, source: &str) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("ce-specversion", SPEC_VERSION.to_owned()),
        ("ce-id", event.id.clone()),
        ("ce-source", source.to_owned()),
        ("ce-type", event.event_type.clone()),
        ("ce-subject", event.aggregate_id.clone()),
        ("ce-time", time(event)),
    ];
    if let Some(traceparent) = traceparent(event) {
        headers.push(("traceparent", traceparent.to_owned()));
    }
    headers
}

/// The event's `data`: the body of a binary-mode event.
pub fn data(event: &OutboxEvent) -> Value {
    event.payload.get("data").cloned().unwrap_or(Value::Null)
}

/// The W3C `traceparent` of the request that wrote `event`, when it was stored with one.
pub fn traceparent(event: &OutboxEvent) -> Option<&str> {
    event.payload.get("traceparent").and_then(Value::as_str)
}

/// `occurredAt` (Unix seconds) as an RFC 3339 UTC timestamp.
fn time(event: &OutboxEvent) -> String {
    rfc3339(
        event
            .payload
            .get("occurredAt")
            .and_then(Value::as_i64)
            .unwrap_or(0),
    )
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub fn rfc3339(unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let seconds = unix_seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        seconds / 3600,
        seconds % 3600 / 60,
        seconds % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> OutboxEvent {
        OutboxEvent {
            id: "e1".to_owned(),
            event_type: "UserRegisteredEventV1".to_owned(),
            aggregate_id: "u1".to_owned(),
            payload: json!({
                "id": "e1", "type": "UserRegisteredEventV1", "version": 1,
                "occurredAt": 1_800_000_000, "data": { "userId": "u1" },
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            }),
        }
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
    }

    #[test]
    fn a_structured_event_has_every_required_attribute() {
        let cloud_event = structured(&event(), "/user-service");
        assert_eq!(cloud_event["specversion"], "1.0");
        assert_eq!(cloud_event["id"], "e1");
        assert_eq!(cloud_event["source"], "/user-service");
        assert_eq!(cloud_event["type"], "UserRegisteredEventV1");
        assert_eq!(cloud_event["subject"], "u1");
        assert_eq!(cloud_event["time"], "2027-01-15T08:00:00Z");
        assert_eq!(cloud_event["datacontenttype"], "application/json");
        assert_eq!(cloud_event["data"]["userId"], "u1");
        assert!(cloud_event["traceparent"].as_str().is_some());
        let headers = binary_headers(&event(), "/user-service");
        assert!(headers.contains(&("ce-id", "e1".to_owned())));
        assert!(headers.iter().any(|(name, _)| *name == "traceparent"));
    }
}
