//! Throughput of the outbox relay to NATS JetStream: events already committed in a SQLite
//! outbox, published by the real [`Relay`] through its `nats` sink (each acknowledged by
//! JetStream before it counts) to Debian's `nats-server` started on 127.0.0.1. The baseline is
//! the same number of the same messages (structured CloudEvent body, `Nats-Msg-Id`) published
//! straight with the same client library (`async-nats`), same concurrency, each acknowledgement
//! awaited: what the relay adds is the outbox bookkeeping (query, lease, mark delivered).
//!
//! Prints JSON lines: `bench`, `per_sec`, `iterations`, and for the relay the baseline's
//! `native_per_sec` and `ratio` (relay time ÷ direct time). Run with
//! `cargo bench -p harness --bench outbox_nats` (`OUTBOX_EVENTS` sets the count, default 2000).

use bytes::Bytes;
use futures_util::StreamExt;
use harness::nats::TestNats;
use serde_json::json;
use std::{collections::BTreeMap, sync::Arc, time::Instant};
use user_service::{
    outbound::{InternalClient, discovery::Discovery},
    outbox::{EventsConfig, Relay, cloudevents, nats::NatsSinkConfig, sinks::SinkConfig},
    store::{OutboxEvent, Store, random_id},
};

const PARALLELISM: usize = 8;
const USERS: usize = 200;
const STREAM: &str = "USER_SERVICE_EVENTS";

fn events() -> usize {
    std::env::var("OUTBOX_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2000)
}

fn event(n: usize) -> OutboxEvent {
    let id = random_id().expect("id");
    let user = format!("user-{}", n % USERS);
    OutboxEvent {
        id: id.clone(),
        event_type: "UserRegisteredEventV1".to_owned(),
        aggregate_id: user.clone(),
        payload: json!({ "id": id, "type": "UserRegisteredEventV1", "version": 1, "occurredAt": 1_800_000_000, "data": { "userId": user } }),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let nats = TestNats::start().await.expect("nats-server");
        let count = events();
        let config = EventsConfig {
            sinks: vec![SinkConfig::Nats(NatsSinkConfig {
                name: None,
                url: nats.url(),
                subject_prefix: "user-service.events".to_owned(),
                stream: STREAM.to_owned(),
                create_stream: true,
                duplicate_window_s: None,
            })],
            parallelism: PARALLELISM,
            batch_size: 500,
            ..EventsConfig::default()
        };
        let gateway = Arc::new(
            policy_host::egress::EgressGateway::new(Default::default()).expect("gateway"),
        );
        let client = Arc::new(InternalClient::new(
            gateway,
            Discovery::new(&BTreeMap::new()).expect("discovery"),
            None,
        ));
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::connect(&format!("sqlite://{}/bench.db", dir.path().display()))
            .await
            .expect("store");
        let relay = Arc::new(Relay::new(store.clone(), config, client));
        relay
            .prepare(std::time::Duration::from_secs(5))
            .await
            .expect("the stream");

        // Baseline: the same messages, published straight with async-nats.
        let jetstream = nats.jetstream().await.expect("jetstream");
        let direct_events: Vec<OutboxEvent> = (0..count).map(event).collect();
        let started = Instant::now();
        futures_util::stream::iter(direct_events.iter())
            .for_each_concurrent(PARALLELISM, |event| {
                let jetstream = jetstream.clone();
                async move {
                    let body = serde_json::to_vec(&cloudevents::structured(event, "/user-service"))
                        .expect("body");
                    let mut headers = async_nats::HeaderMap::new();
                    headers.insert("Nats-Msg-Id", event.id.as_str());
                    headers.insert("Content-Type", cloudevents::STRUCTURED_CONTENT_TYPE);
                    jetstream
                        .publish_with_headers(
                            format!("user-service.events.{}", event.event_type),
                            headers,
                            Bytes::from(body),
                        )
                        .await
                        .expect("publish")
                        .await
                        .expect("acknowledged");
                }
            })
            .await;
        let direct = started.elapsed();

        // The relay: the events committed first, then delivered.
        for n in 0..count {
            let event = event(n);
            store
                .create_reset_token(&event.id, &event.aggregate_id, 0, &event)
                .await
                .expect("insert event");
        }
        let started = Instant::now();
        let running = tokio::spawn(relay.run());
        while store.outbox_counts().await.expect("counts").0 > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let relayed = started.elapsed();
        running.abort();
        let stored = nats
            .jetstream()
            .await
            .expect("jetstream")
            .get_stream(STREAM)
            .await
            .expect("stream")
            .info()
            .await
            .expect("info")
            .state
            .messages;
        assert_eq!(stored as usize, 2 * count, "every event stored once");

        let per_sec = |elapsed: std::time::Duration| (count as f64 / elapsed.as_secs_f64()).round();
        println!(
            "{}",
            json!({ "bench": "outbox/direct-nats", "per_sec": per_sec(direct), "iterations": count })
        );
        println!(
            "{}",
            json!({
                "bench": "outbox/relay-nats",
                "per_sec": per_sec(relayed),
                "iterations": count,
                "users": USERS,
                "native_per_sec": per_sec(direct),
                "ratio": ((relayed.as_secs_f64() / direct.as_secs_f64()) * 100.0).round() / 100.0,
            })
        );
    });
}
