//! Rollout figures with three real replica processes on one real PostgreSQL. One JSON line per
//! bench (`bench`, `median_ns`, `p99_ns`, `iterations`, …):
//!
//! - `rollout/publish-to-all-replicas`: from `PUT /admin/plugins/password-policy/desired` on one
//!   replica to every replica serving the new digest (`GET /admin/plugins`, polled every 5 ms),
//!   alternating between two versions each replica compiled before (the artifact cache holds
//!   them: a rollback or re-publication); the first, cold publication is reported apart;
//! - `rollout/publish-to-all-replicas-cold`: the same for components no replica compiled before
//!   (the bundled policy with a distinct custom section each round), with the replicas sharing
//!   an artifact key: the uploading replica compiles during the `PUT` and stores the signed
//!   artifact, the others deserialize it. `median_ns`/`p99_ns` from the end of the `PUT` to
//!   every replica serving; `put_median_ns` the `PUT` itself (the one compilation), and
//!   `total_median_ns`/`total_p99_ns` from its start;
//! - `rollout/shadow-request-cost`: `POST /v1/password/check` latency on one replica without a
//!   candidate and with a shadow at 100 % sampling, interleaved in blocks (`ratio` = shadow ÷
//!   none at the median).
//!
//! Run with `cargo bench -p harness --bench rollout` (`-- --quick` for fewer rounds). The
//! replicas are this binary re-run with `HARNESS_REPLICA_CONFIG` set.

use harness::{
    components, password_policy_component,
    replicas::{
        Replica, admin, artifact_key_config, desired_body, distinct_component, serve_bytes_body,
        serve_if_asked, start_fleet,
    },
};
use reqwest::{Client, Method};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn quick() -> bool {
    std::env::args().any(|arg| arg == "--quick")
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples.get(index).copied().unwrap_or_default()
}

async fn serving_sha(client: &Client, replica: &Replica) -> Option<String> {
    let body: Value = admin(client, Method::GET, replica, "/admin/plugins")
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["plugins"]
        .as_array()?
        .iter()
        .find(|plugin| plugin["name"] == "password-policy")?["sha256"]
        .as_str()
        .map(|sha| format!("sha256:{sha}"))
}

/// Publishes `body` through `via` and returns the time until every replica serves it, from the
/// start of the `PUT` and from its end.
async fn publish(
    client: &Client,
    fleet: &[Replica],
    via: usize,
    body: &Value,
) -> (Duration, Duration) {
    let started = Instant::now();
    let answer: Value = admin(
        client,
        Method::PUT,
        &fleet[via],
        "/admin/plugins/password-policy/desired",
    )
    .json(body)
    .send()
    .await
    .expect("publish")
    .json()
    .await
    .expect("publish answer");
    let digest = answer["serving_digest"]
        .as_str()
        .expect("a digest")
        .to_owned();
    let put_done = Instant::now();
    for replica in fleet {
        while serving_sha(client, replica).await.as_deref() != Some(digest.as_str()) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never published"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    (started.elapsed(), put_done.elapsed())
}

fn line(bench: &str, samples: &mut [Duration], extra: Value) {
    let median = percentile(samples, 0.5);
    let p99 = percentile(samples, 0.99);
    let mut line = json!({
        "bench": bench,
        "median_ns": median.as_nanos() as u64,
        "p99_ns": p99.as_nanos() as u64,
        "iterations": samples.len(),
    });
    if let (Some(line), Some(extra)) = (line.as_object_mut(), extra.as_object()) {
        line.extend(extra.clone());
    }
    println!("{line}");
}

/// Latencies of `n` password checks on `replica`, one at a time.
async fn checks(client: &Client, replica: &Replica, n: usize, offset: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for index in 0..n {
        let started = Instant::now();
        let response = client
            .post(format!("{}/v1/password/check", replica.url()))
            .json(&json!({ "password": "correct horse battery staple", "email": format!("bench-{}@example.org", offset + index) }))
            .send()
            .await
            .expect("check");
        assert_eq!(response.status(), 200);
        let _ = response.bytes().await;
        samples.push(started.elapsed());
    }
    samples
}

fn main() {
    serve_if_asked();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let key = artifact_key_config(dir.path(), "artifact.key", &"b7".repeat(32));
        let fleet = start_fleet(dir.path(), 3, &[], &key)
            .await
            .expect("replicas");
        let client = Client::new();
        let next = desired_body(
            std::path::Path::new(components::PASSWORD_POLICY_NEXT),
            "serving",
            json!({}),
        );
        let bundled = desired_body(password_policy_component(), "serving", json!({}));
        let (cold, _) = publish(&client, &fleet, 0, &next).await;
        let rounds = if quick() { 6 } else { 30 };
        let mut samples = Vec::new();
        for round in 0..rounds {
            let body = if round % 2 == 0 { &bundled } else { &next };
            samples.push(publish(&client, &fleet, round % 3, body).await.0);
        }
        line(
            "rollout/publish-to-all-replicas",
            &mut samples,
            json!({ "replicas": 3, "cold_ns": cold.as_nanos() as u64 }),
        );

        // Cold, compiled once: a component nobody compiled, every round.
        let (mut after_put, mut totals, mut puts) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let bytes = distinct_component(password_policy_component(), &format!("cold-{round}"));
            let (total, after) =
                publish(&client, &fleet, round % 3, &serve_bytes_body(&bytes)).await;
            after_put.push(after);
            puts.push(total.saturating_sub(after));
            totals.push(total);
        }
        let ns = |duration: Duration| duration.as_nanos() as u64;
        line(
            "rollout/publish-to-all-replicas-cold",
            &mut after_put,
            json!({
                "replicas": 3,
                "put_median_ns": ns(percentile(&mut puts, 0.5)),
                "total_median_ns": ns(percentile(&mut totals, 0.5)),
                "total_p99_ns": ns(percentile(&mut totals, 0.99)),
            }),
        );

        // Shadow cost: blocks without and with a shadow, interleaved.
        let blocks = if quick() { 2 } else { 6 };
        let per_block = if quick() { 100 } else { 300 };
        let (mut none, mut shadow) = (Vec::new(), Vec::new());
        let shadow_body = desired_body(
            password_policy_component(),
            "shadow",
            json!({ "sample-percent": shadow_sample_percent(), "max-concurrent": 4, "settings": { "min-length": "20" } }),
        );
        for block in 0..blocks {
            none.extend(checks(&client, &fleet[0], per_block, block * per_block * 2).await);
            admin(&client, Method::PUT, &fleet[0], "/admin/plugins/password-policy/desired")
                .json(&shadow_body)
                .send()
                .await
                .expect("stage");
            tokio::time::sleep(Duration::from_millis(300)).await;
            shadow.extend(
                checks(&client, &fleet[0], per_block, block * per_block * 2 + per_block).await,
            );
            admin(&client, Method::POST, &fleet[0], "/admin/plugins/password-policy/abort")
                .send()
                .await
                .expect("abort");
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let none_median = percentile(&mut none, 0.5);
        let shadow_median = percentile(&mut shadow, 0.5);
        line(
            "rollout/shadow-request-cost/none",
            &mut none,
            json!({ "replicas": 3 }),
        );
        line(
            &format!("rollout/shadow-request-cost/shadow-{}", shadow_sample_percent()),
            &mut shadow,
            json!({
                "replicas": 3,
                "ratio": shadow_median.as_secs_f64() / none_median.as_secs_f64().max(1e-9),
            }),
        );
    });
}

/// The shadow's sampling rate for the request-cost lines (`SHADOW_SAMPLE_PERCENT`, default 100:
/// the worst case).
fn shadow_sample_percent() -> u32 {
    std::env::var("SHADOW_SAMPLE_PERCENT")
        .ok()
        .and_then(|value| value.parse().ok())
        .filter(|percent| *percent <= 100)
        .unwrap_or(100)
}
