//! Where the relay delivers events: an HTTP event endpoint, a JSON-lines file, a NATS
//! JetStream stream ([`super::nats`]), and the direct `POST /notifications/email` fallback for
//! password resets and email verifications. Every event leaves as a CloudEvent
//! ([`super::cloudevents`]).

use super::{
    cloudevents,
    nats::{NatsSink, NatsSinkConfig},
};
use crate::{
    outbound::{InternalClient, InternalRequest, OutboundError, scrub::describe_response},
    store::OutboxEvent,
};
use bytes::Bytes;
use egress::EgressError;
use http::Method;
use serde::Deserialize;
use serde_json::json;
use std::{io::Write, path::PathBuf, sync::Arc, time::Duration};

/// One configured sink (`[[events.sinks]]`, told apart by `kind`).
#[derive(Debug, Clone, Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case",
    deny_unknown_fields
)]
pub enum SinkConfig {
    /// `POST <service><path>` with the event as a CloudEvent (structured or binary mode) and
    /// `Idempotency-Key: <event id>`; any 2xx is a delivery.
    Http {
        /// Name recorded per event (default `http`); change it and events are sent again.
        #[serde(default)]
        name: Option<String>,
        /// Logical service name, e.g. `notification-service`.
        service: String,
        /// Path of the event endpoint (default `/events`).
        #[serde(default = "default_events_path")]
        path: String,
        /// CloudEvents HTTP binding mode (`mode`): `structured` (default) or `binary`.
        #[serde(default)]
        mode: HttpMode,
    },
    /// Published to NATS JetStream, acknowledged before it counts ([`super::nats`]).
    Nats(NatsSinkConfig),
    /// One structured CloudEvent per line appended to `path`, synced to disk before it counts.
    File {
        #[serde(default)]
        /// A name for logs and metrics.
        name: Option<String>,
        /// The file appended to.
        path: PathBuf,
    },
    /// The direct notification call, for Notification Services that take them:
    /// `PasswordResetRequestedEventV1` and `EmailVerificationRequestedEventV1` become
    /// `POST <service>/notifications/email`; other event types are not for this sink and count
    /// as delivered.
    NotificationEmail {
        #[serde(default)]
        /// A name for logs and metrics.
        name: Option<String>,
        #[serde(default = "default_notification_service")]
        /// The discovered service to call.
        service: String,
        #[serde(default = "default_email_path")]
        /// The path on it.
        path: String,
    },
}

/// How the HTTP sink carries a CloudEvent (the CloudEvents HTTP protocol binding).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum HttpMode {
    /// The whole event as the body, `Content-Type: application/cloudevents+json`.
    #[default]
    Structured,
    /// `data` as the body, the attributes as `ce-*` headers.
    Binary,
}

fn default_events_path() -> String {
    "/events".to_owned()
}

fn default_notification_service() -> String {
    "notification-service".to_owned()
}

fn default_email_path() -> String {
    "/notifications/email".to_owned()
}

impl SinkConfig {
    /// The name deliveries are recorded under.
    pub fn name(&self) -> String {
        match self {
            Self::Http { name, .. } => name.clone().unwrap_or_else(|| "http".to_owned()),
            Self::File { name, .. } => name.clone().unwrap_or_else(|| "file".to_owned()),
            Self::Nats(nats) => nats.name.clone().unwrap_or_else(|| "nats".to_owned()),
            Self::NotificationEmail { name, .. } => name
                .clone()
                .unwrap_or_else(|| "notification-email".to_owned()),
        }
    }
}

/// Why a delivery did not count.
#[derive(Debug)]
pub enum DeliveryError {
    /// Nothing was sent: the destination's circuit breaker is open. Not a delivery attempt: it
    /// uses up none of the event's attempts and is not counted as a failure.
    Deferred {
        /// The destination whose breaker is open.
        origin: String,
    },
    /// The sink was tried and did not take the event. The message names statuses, sizes and
    /// causes, never a response body (see [`crate::outbound::scrub`]).
    Failed(String),
}

impl DeliveryError {
    fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }
}

/// A sink ready to deliver.
pub struct Sink {
    name: String,
    config: SinkConfig,
    client: Arc<InternalClient>,
    /// The CloudEvents `source` of every event (`[events] source`).
    source: String,
    /// Serialises appends to the file (lines must not interleave).
    file_lock: tokio::sync::Mutex<()>,
    /// The JetStream publisher of a `nats` sink.
    nats: Option<NatsSink>,
}

impl Sink {
    /// A sink for `config`, emitting CloudEvents from `source`; a NATS sink's JetStream
    /// acknowledgements are awaited for at most `timeout`.
    pub fn new(
        config: SinkConfig,
        client: Arc<InternalClient>,
        source: String,
        timeout: Duration,
    ) -> Self {
        let nats = match &config {
            SinkConfig::Nats(nats) => Some(NatsSink::new(
                nats.clone(),
                timeout,
                client.breaker_config(),
            )),
            _ => None,
        };
        Self {
            name: config.name(),
            config,
            client,
            source,
            file_lock: tokio::sync::Mutex::new(()),
            nats,
        }
    }

    /// The sink's start-up check (a NATS sink's stream; see [`NatsSink::prepare`]).
    pub async fn prepare(&self, horizon: Duration, wait: Duration) -> anyhow::Result<()> {
        match &self.nats {
            Some(nats) => nats
                .prepare(horizon, wait)
                .await
                .map_err(|error| error.context(format!("sink `{}`", self.name))),
            None => Ok(()),
        }
    }

    /// The name deliveries are recorded under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Delivers one event; `Err` says why it did not count.
    pub async fn deliver(
        &self,
        event: &OutboxEvent,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        match &self.config {
            SinkConfig::Http {
                service,
                path,
                mode,
                ..
            } => {
                let (body, headers) = match mode {
                    HttpMode::Structured => (
                        cloudevents::structured(event, &self.source),
                        [(
                            "content-type",
                            cloudevents::STRUCTURED_CONTENT_TYPE.to_owned(),
                        )]
                        .into_iter()
                        .chain(
                            cloudevents::traceparent(event)
                                .map(|traceparent| ("traceparent", traceparent.to_owned())),
                        )
                        .collect(),
                    ),
                    HttpMode::Binary => (
                        cloudevents::data(event),
                        cloudevents::binary_headers(event, &self.source),
                    ),
                };
                let body = serde_json::to_vec(&body).map_err(|error| {
                    DeliveryError::failed(format!("cannot encode the event: {error}"))
                })?;
                self.post(
                    service,
                    path,
                    Bytes::from(body),
                    &event.id,
                    headers,
                    timeout,
                )
                .await
            }
            SinkConfig::Nats(_) => match &self.nats {
                Some(nats) => nats.publish(event, &self.source).await,
                None => Err(DeliveryError::failed("the NATS sink is not set up")),
            },
            SinkConfig::File { path, .. } => {
                let _appending = self.file_lock.lock().await;
                let path = path.clone();
                let line = format!("{}\n", cloudevents::structured(event, &self.source));
                tokio::task::spawn_blocking(move || append_line(&path, line.as_bytes()))
                    .await
                    .map_err(|error| format!("file sink task failed: {error}"))
                    .flatten()
                    .map_err(DeliveryError::failed)
            }
            SinkConfig::NotificationEmail { service, path, .. } => {
                let Some(body) = notification_email(event)? else {
                    return Ok(());
                };
                // The Notification Service call carries the trace of the request that asked.
                let headers = cloudevents::traceparent(event)
                    .map(|traceparent| vec![("traceparent", traceparent.to_owned())])
                    .unwrap_or_default();
                self.post(
                    service,
                    path,
                    Bytes::from(body.to_string()),
                    &event.id,
                    headers,
                    timeout,
                )
                .await
            }
        }
    }

    async fn post(
        &self,
        service: &str,
        path: &str,
        body: Bytes,
        event_id: &str,
        headers: Vec<(&'static str, String)>,
        timeout: Duration,
    ) -> Result<(), DeliveryError> {
        let response = self
            .client
            .send(&InternalRequest {
                service,
                method: Method::POST,
                path,
                json: Some(body),
                idempotency_key: Some(event_id),
                headers,
                timeout,
            })
            .await
            .map_err(|error| match error {
                OutboundError::Egress {
                    source: EgressError::BreakerOpen { origin },
                    ..
                } => DeliveryError::Deferred { origin },
                error => DeliveryError::failed(error.to_string()),
            })?;
        if response.status.is_success() {
            Ok(())
        } else {
            // Status and size only: a consumer may echo the request, reset link included.
            Err(DeliveryError::failed(describe_response(
                service,
                response.status,
                response.body.len(),
            )))
        }
    }
}

/// The direct notification an event becomes: `PasswordResetRequestedEventV1` the
/// `password-reset` template, `EmailVerificationRequestedEventV1` the `email-verification`
/// one; `None` for every other type (not for this sink).
fn notification_email(event: &OutboxEvent) -> Result<Option<serde_json::Value>, DeliveryError> {
    let (template, link_key) = match event.event_type.as_str() {
        "PasswordResetRequestedEventV1" => ("password-reset", "resetLink"),
        "EmailVerificationRequestedEventV1" => ("email-verification", "verificationLink"),
        _ => return Ok(None),
    };
    let data = &event.payload["data"];
    let (Some(to), Some(link)) = (data["email"].as_str(), data[link_key].as_str()) else {
        return Err(DeliveryError::failed(format!(
            "the event has no email or {link_key}"
        )));
    };
    Ok(Some(json!({
        "to": to,
        "templateId": template,
        "context": { link_key: link, "userName": data["userName"] },
    })))
}

fn append_line(path: &std::path::Path, line: &[u8]) -> Result<(), String> {
    let describe = |error: std::io::Error| format!("{}: {error}", path.display());
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent).map_err(describe)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(describe)?;
    file.write_all(line).map_err(describe)?;
    file.sync_data().map_err(describe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, data: serde_json::Value) -> OutboxEvent {
        OutboxEvent {
            id: "e".into(),
            event_type: event_type.into(),
            aggregate_id: "u".into(),
            payload: json!({ "data": data }),
        }
    }

    #[test]
    fn verification_and_reset_events_map_to_their_templates() {
        let verification = event(
            "EmailVerificationRequestedEventV1",
            json!({ "email": "a@example.org", "verificationLink": "https://x/v?token=t", "userName": "Ann" }),
        );
        let body = notification_email(&verification).ok().flatten().unwrap();
        assert_eq!(body["templateId"], "email-verification");
        assert_eq!(body["to"], "a@example.org");
        assert_eq!(body["context"]["verificationLink"], "https://x/v?token=t");
        let reset = event(
            "PasswordResetRequestedEventV1",
            json!({ "email": "a@example.org", "resetLink": "https://x/r", "userName": null }),
        );
        let body = notification_email(&reset).ok().flatten().unwrap();
        assert_eq!(body["templateId"], "password-reset");
        assert_eq!(body["context"]["resetLink"], "https://x/r");
        assert!(matches!(
            notification_email(&event("UserDeletedEventV1", json!({}))),
            Ok(None)
        ));
        assert!(
            notification_email(&event("EmailVerificationRequestedEventV1", json!({}))).is_err()
        );
    }
}
