//! Load benchmark of the User Service over HTTP: `POST /v1/password/check` (password policy +
//! breach check with a cached range) from concurrent keep-alive clients in the same process.
//! Prints one JSON line: `bench`, `median_ns`, `p99_ns`, `per_sec`, `iterations`, `clients`.
//!
//! Run with `cargo bench -p harness --bench service_load`. Client and server share the
//! machine's two cores, as a load generator on the same host would.

use harness::{hibp::HibpServer, service::TestService};
use serde_json::json;
use std::time::{Duration, Instant};

/// Concurrent clients (`LOAD_CLIENTS` overrides).
fn clients() -> usize {
    std::env::var("LOAD_CLIENTS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(16)
}
const DURATION: Duration = Duration::from_secs(10);
const WARMUP: Duration = Duration::from_secs(2);

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let hibp = HibpServer::start(&[("password123", 1000)]).await;
        let service = TestService::start(&hibp.server.url(), None, |_| {})
            .await
            .expect("service");
        let url = service.url("/v1/password/check");
        let body =
            json!({ "password": "correct horse battery staple", "email": "load@example.org" });
        let clients = clients();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(clients)
            .build()
            .expect("client");
        // Warm the breach range cache and the connections.
        let response = client
            .post(&url)
            .json(&body)
            .send()
            .await
            .expect("warm-up request");
        assert!(response.status().is_success());

        let run = |duration: Duration| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move {
                let deadline = Instant::now() + duration;
                let mut tasks = Vec::new();
                for _ in 0..clients {
                    let (client, url, body) = (client.clone(), url.clone(), body.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut latencies = Vec::new();
                        while Instant::now() < deadline {
                            let started = Instant::now();
                            let response =
                                client.post(&url).json(&body).send().await.expect("request");
                            assert!(response.status().is_success(), "{}", response.status());
                            let _ = response.bytes().await.expect("body");
                            latencies.push(started.elapsed());
                        }
                        latencies
                    }));
                }
                let mut all = Vec::new();
                for task in tasks {
                    all.extend(task.await.expect("client task"));
                }
                all
            }
        };
        run(WARMUP).await;
        let started = Instant::now();
        let mut latencies = run(DURATION).await;
        let elapsed = started.elapsed();
        latencies.sort_unstable();
        let at = |q: f64| {
            latencies[((latencies.len() - 1) as f64 * q).round() as usize].as_nanos() as u64
        };
        println!(
            "{}",
            json!({
                "bench": "service/password-check",
                "median_ns": at(0.5),
                "p99_ns": at(0.99),
                "per_sec": (latencies.len() as f64 / elapsed.as_secs_f64()).round(),
                "iterations": latencies.len(),
                "clients": clients,
            })
        );
        assert_eq!(
            hibp.server.request_count(),
            1,
            "the breach range was served from the cache throughout"
        );
    });
}
