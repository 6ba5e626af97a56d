//! Throughput of the outbox relay: events already committed in a SQLite outbox, delivered to a
//! local HTTP consumer (`POST /events`, 202) by the real [`Relay`]. The baseline is the same
//! number of the same POSTs sent straight through the same internal client with the same
//! concurrency: what the relay adds is the outbox bookkeeping (query, lease, mark delivered).
//!
//! Prints JSON lines: `bench`, `per_sec`, `iterations`, and for the relay the baseline's
//! `native_per_sec` and `ratio` (relay time ÷ direct time). Run with
//! `cargo bench -p harness --bench outbox_relay` (`OUTBOX_EVENTS` sets the count, default 2000).

use bytes::Bytes;
use futures_util::StreamExt;
use harness::internal_services::ResourceServer;
use serde_json::json;
use std::{collections::BTreeMap, sync::Arc, time::Instant};
use user_service::{
    outbound::{
        InternalClient, InternalRequest,
        discovery::{Discovery, ServiceLocation},
    },
    outbox::{EventsConfig, Relay, sinks::SinkConfig},
    store::{OutboxEvent, Store, random_id},
};

const PARALLELISM: usize = 8;
const USERS: usize = 200;

fn events() -> usize {
    std::env::var("OUTBOX_EVENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(2000)
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let consumer = ResourceServer::start("/events", None).await;
        let services = BTreeMap::from([(
            "event-consumer".to_owned(),
            ServiceLocation {
                url: Some(consumer.url()),
                ..ServiceLocation::default()
            },
        )]);
        let gateway = Arc::new(
            policy_host::egress::EgressGateway::new(Default::default()).expect("gateway"),
        );
        let client = Arc::new(InternalClient::new(
            gateway,
            Discovery::new(&services).expect("discovery"),
            None,
        ));
        let count = events();

        // Baseline: the same POSTs, straight through the client.
        let started = Instant::now();
        futures_util::stream::iter(0..count)
            .for_each_concurrent(PARALLELISM, |n| {
                let client = client.clone();
                async move {
                    let key = format!("direct-{n}");
                    let body = json!({ "id": key, "type": "UserRegisteredEventV1", "data": {} });
                    let response = client
                        .send(&InternalRequest {
                            service: "event-consumer",
                            method: http::Method::POST,
                            path: "/events",
                            json: Some(Bytes::from(body.to_string())),
                            idempotency_key: Some(&key),
                            headers: Vec::new(),
                            timeout: std::time::Duration::from_secs(5),
                        })
                        .await
                        .expect("direct delivery");
                    assert!(response.status.is_success());
                }
            })
            .await;
        let direct = started.elapsed();

        // The relay: the events committed first, then delivered.
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::connect(&format!("sqlite://{}/bench.db", dir.path().display()))
            .await
            .expect("store");
        for n in 0..count {
            let id = random_id().expect("id");
            let user = format!("user-{}", n % USERS);
            let event = OutboxEvent {
                id: id.clone(),
                event_type: "UserRegisteredEventV1".to_owned(),
                aggregate_id: user.clone(),
                payload: json!({ "id": id, "type": "UserRegisteredEventV1", "data": { "userId": user } }),
            };
            store
                .create_reset_token(&id, &user, 0, &event)
                .await
                .expect("insert event");
        }
        let config = EventsConfig {
            sinks: vec![SinkConfig::Http {
                name: None,
                service: "event-consumer".to_owned(),
                path: "/events".to_owned(),
                mode: user_service::outbox::sinks::HttpMode::Structured,
            }],
            parallelism: PARALLELISM,
            batch_size: 500,
            ..EventsConfig::default()
        };
        let relay = std::sync::Arc::new(Relay::new(store.clone(), config, client));
        let started = Instant::now();
        let running = tokio::spawn(relay.run());
        while store.outbox_counts().await.expect("counts").0 > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        let relayed = started.elapsed();
        running.abort();
        assert!(consumer.accepted().len() >= 2 * count, "every event arrived");

        let per_sec = |elapsed: std::time::Duration| (count as f64 / elapsed.as_secs_f64()).round();
        println!(
            "{}",
            json!({ "bench": "outbox/direct-http", "per_sec": per_sec(direct), "iterations": count })
        );
        println!(
            "{}",
            json!({
                "bench": "outbox/relay-http",
                "per_sec": per_sec(relayed),
                "iterations": count,
                "users": USERS,
                "native_per_sec": per_sec(direct),
                "ratio": ((relayed.as_secs_f64() / direct.as_secs_f64()) * 100.0).round() / 100.0,
            })
        );
    });
}
