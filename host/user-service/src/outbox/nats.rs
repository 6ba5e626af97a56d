//! The NATS JetStream sink (`kind = "nats"`): each event is published to
//! `<subject-prefix>.<type>` as a structured CloudEvent with `Nats-Msg-Id` = the event id, and
//! counts as delivered only once JetStream has acknowledged storing it.
//!
//! - **Exactly once into the stream**: a re-send (a retry after a lost acknowledgement, or a
//!   restart between publish and acknowledgement) carries the same `Nats-Msg-Id`, which
//!   JetStream drops within the stream's `duplicate_window`. The window must cover the relay's
//!   retry horizon ([`super::EventsConfig::retry_horizon`]); a stream this sink creates gets at
//!   least that, and an existing one with a shorter window is reported at start.
//! - **No acknowledgement, no delivery**: a nack (`no responders`, a JetStream error), a
//!   timeout or a lost connection is a failed attempt, retried with the relay's backoff and
//!   dead-lettered after `max-attempts` like any other sink's.
//! - **A circuit breaker** (the `[outbound] defaults.breaker` settings) guards the server like
//!   the gateway guards HTTP destinations: while it is open, deliveries are deferred (no attempt
//!   used), and its half-open probes find out when NATS is back.
//! - **The connection** is opened at start (or, when the server is down then, in the
//!   background with reconnects, never failing the start) and reconnects by itself.
//!
//! Only JetStream API calls that NATS Server 2.9 knows are used (publish, `STREAM.INFO`,
//! `STREAM.CREATE`), and the client is built without its `server_2_10`+ features, so stream
//! configurations carry no field a 2.9 server would not understand.

use super::{cloudevents, sinks::DeliveryError};
use crate::store::OutboxEvent;
use async_nats::jetstream::{self, context::GetStreamErrorKind, stream};
use bytes::Bytes;
use egress::{breaker::CircuitBreaker, config::BreakerConfig};
use serde::Deserialize;
use std::time::Duration;

/// `[[events.sinks]] kind = "nats"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NatsSinkConfig {
    /// Name recorded per event (default `nats`).
    #[serde(default)]
    pub name: Option<String>,
    /// Server URL(s), comma-separated (`url`, e.g. `nats://nats.platform.svc:4222`).
    pub url: String,
    /// Subject prefix (`subject-prefix`): events go to `<prefix>.<type>`.
    #[serde(default = "default_prefix")]
    pub subject_prefix: String,
    /// The JetStream stream that must capture `<prefix>.>` (`stream`).
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Create the stream at start when it does not exist (`create-stream`): subjects
    /// `<prefix>.>`, file storage, `duplicate_window` = `duplicate-window-s`. Off: the stream
    /// must exist, and the start fails saying what is missing.
    #[serde(default)]
    pub create_stream: bool,
    /// Duplicate window of a created stream, in seconds (`duplicate-window-s`); at least the
    /// relay's retry horizon is used whatever is set.
    #[serde(default)]
    pub duplicate_window_s: Option<u64>,
}

fn default_prefix() -> String {
    "user-service.events".to_owned()
}

fn default_stream() -> String {
    "USER_SERVICE_EVENTS".to_owned()
}

/// A connected JetStream publisher.
pub struct NatsSink {
    config: NatsSinkConfig,
    /// How long a publish waits for its acknowledgement.
    ack_timeout: Duration,
    /// Opens after a run of failed publishes; deliveries are deferred while it is open.
    breaker: CircuitBreaker,
    context: tokio::sync::OnceCell<jetstream::Context>,
}

impl NatsSink {
    /// A sink for `config` waiting `ack_timeout` for acknowledgements; nothing is connected
    /// until [`Self::prepare`] or the first delivery.
    pub fn new(config: NatsSinkConfig, ack_timeout: Duration, breaker: BreakerConfig) -> Self {
        Self {
            breaker: CircuitBreaker::new(format!("nats:{}", config.url), breaker),
            config,
            ack_timeout,
            context: tokio::sync::OnceCell::new(),
        }
    }

    /// The subject an event of `event_type` is published to.
    pub fn subject(&self, event_type: &str) -> String {
        format!("{}.{event_type}", self.config.subject_prefix)
    }

    /// The JetStream context; connects on first use. The client retries its initial connection
    /// and reconnects forever in the background, so this never waits for a server.
    async fn context(&self) -> Result<&jetstream::Context, String> {
        self.context
            .get_or_try_init(|| async {
                let client = async_nats::ConnectOptions::new()
                    .name("user-service outbox relay")
                    .retry_on_initial_connect()
                    .max_reconnects(None)
                    .connection_timeout(Duration::from_secs(2))
                    .connect(self.config.url.as_str())
                    .await
                    .map_err(|error| format!("NATS {}: {error}", self.config.url))?;
                let mut context = jetstream::new(client);
                context.set_timeout(self.ack_timeout);
                Ok(context)
            })
            .await
    }

    /// At start: checks the stream exists and captures `<prefix>.>` with a duplicate window of
    /// at least `horizon`, creating it when `create-stream` is set. A server that does not
    /// answer within `wait` is logged and left to the relay's retries; a missing or unsuitable
    /// stream is an error that says what is missing.
    pub async fn prepare(&self, horizon: Duration, wait: Duration) -> anyhow::Result<()> {
        let context = self.context().await.map_err(anyhow::Error::msg)?;
        let name = &self.config.stream;
        let wildcard = format!("{}.>", self.config.subject_prefix);
        let window = horizon.max(Duration::from_secs(
            self.config.duplicate_window_s.unwrap_or(0),
        ));
        let info = match tokio::time::timeout(wait, context.get_stream(name)).await {
            Err(_) => {
                tracing::warn!(url = %self.config.url, stream = %name, "NATS does not answer at start; events wait in the outbox until it does");
                return Ok(());
            }
            Ok(Ok(mut stream)) => stream
                .info()
                .await
                .map_err(|error| anyhow::anyhow!("NATS stream `{name}`: {error}"))?
                .config
                .clone(),
            Ok(Err(error)) => {
                let missing = matches!(error.kind(), GetStreamErrorKind::JetStream(ref inner)
                    if inner.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND);
                if !missing {
                    tracing::warn!(url = %self.config.url, stream = %name, %error, "cannot check the NATS stream at start; events wait in the outbox until NATS answers");
                    return Ok(());
                }
                if !self.config.create_stream {
                    anyhow::bail!(
                        "NATS stream `{name}` does not exist: create it with subjects [\"{wildcard}\"], file storage and a duplicate window of at least {} s, or set create-stream = true on the nats sink",
                        window.as_secs()
                    );
                }
                let created = context
                    .create_stream(stream::Config {
                        name: name.clone(),
                        subjects: vec![wildcard.clone()],
                        storage: stream::StorageType::File,
                        duplicate_window: window,
                        ..stream::Config::default()
                    })
                    .await
                    .map_err(|error| {
                        anyhow::anyhow!("cannot create NATS stream `{name}`: {error}")
                    })?;
                tracing::info!(stream = %name, subjects = %wildcard, duplicate_window_s = window.as_secs(), "created the NATS stream");
                created.cached_info().config.clone()
            }
        };
        let captured = info
            .subjects
            .iter()
            .any(|subject| subject == ">" || *subject == wildcard);
        if !captured {
            anyhow::bail!(
                "NATS stream `{name}` does not capture `{wildcard}` (its subjects: {:?}): add that subject to the stream",
                info.subjects
            );
        }
        if info.duplicate_window < horizon {
            tracing::warn!(
                stream = %name,
                duplicate_window_s = info.duplicate_window.as_secs(),
                retry_horizon_s = horizon.as_secs(),
                "the NATS stream's duplicate window is shorter than the relay's retry horizon: a late re-send may be stored twice"
            );
        }
        Ok(())
    }

    /// Publishes `event` and waits for JetStream's acknowledgement; deferred while the
    /// breaker is open.
    pub async fn publish(&self, event: &OutboxEvent, source: &str) -> Result<(), DeliveryError> {
        let permit = self
            .breaker
            .try_acquire()
            .map_err(|_| DeliveryError::Deferred {
                origin: format!("nats:{}", self.config.url),
            })?;
        let published = self.publish_acknowledged(event, source).await;
        permit.record(published.is_ok());
        published.map_err(DeliveryError::Failed)
    }

    async fn publish_acknowledged(&self, event: &OutboxEvent, source: &str) -> Result<(), String> {
        let context = self.context().await?;
        let body = serde_json::to_vec(&cloudevents::structured(event, source))
            .map_err(|error| format!("cannot encode the event: {error}"))?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.as_str());
        headers.insert("Content-Type", cloudevents::STRUCTURED_CONTENT_TYPE);
        if let Some(traceparent) = cloudevents::traceparent(event) {
            headers.insert("traceparent", traceparent);
        }
        let subject = self.subject(&event.event_type);
        let ack = context
            .publish_with_headers(subject.clone(), headers, Bytes::from(body))
            .await
            .map_err(|error| format!("NATS publish to {subject}: {error}"))?;
        let ack = ack
            .await
            .map_err(|error| format!("NATS acknowledgement for {subject}: {error}"))?;
        if ack.duplicate {
            tracing::debug!(event = %event.id, stream = %ack.stream, "JetStream already had this event (duplicate window)");
        }
        Ok(())
    }
}
