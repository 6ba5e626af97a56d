//! Load benchmark of the User Service over HTTP: `POST /v1/password/check` (password policy +
//! breach check with a cached range) from concurrent keep-alive clients in the same process,
//! against two services in the same run: one whose checks run in the sandboxed plugins (the
//! service as deployed) and one whose checks run the same rules compiled natively
//! (`PasswordChecks::native`: same HTTP, JSON, gateway, cache and storage). The two are
//! measured in alternating slices (ABAB), so whatever the machine's neighbours do hits both.
//! Prints one JSON line: `bench`, `median_ns`, `p99_ns`, `per_sec` (plugins), their `native_`
//! counterparts, `ratio` = plugins ÷ native throughput, `iterations`, `clients`.
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
/// One measured slice of one mode; each mode gets `SLICES` of them.
const SLICE: Duration = Duration::from_secs(2);
const SLICES: usize = 5;
const WARMUP: Duration = Duration::from_secs(2);

/// Latencies of one mode, and the time they took.
#[derive(Default)]
struct Samples {
    latencies: Vec<Duration>,
    elapsed: Duration,
}

impl Samples {
    fn at(&self, q: f64) -> u64 {
        self.latencies[((self.latencies.len() - 1) as f64 * q).round() as usize].as_nanos() as u64
    }

    fn per_sec(&self) -> f64 {
        (self.latencies.len() as f64 / self.elapsed.as_secs_f64()).round()
    }
}

/// `clients` keep-alive clients posting `body` to `url` for `duration`.
async fn run(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    clients: usize,
    duration: Duration,
) -> Vec<Duration> {
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, body) = (client.clone(), url.to_owned(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let started = Instant::now();
                let response = client.post(&url).json(&body).send().await.expect("request");
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

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let hibp = HibpServer::start(&[("password123", 1000)]).await;
        let plugins = TestService::start(&hibp.server.url(), None, |_| {})
            .await
            .expect("service");
        let native = TestService::start_with_native_checks(&hibp.server.url(), None, |_| {})
            .await
            .expect("native service");
        let body =
            json!({ "password": "correct horse battery staple", "email": "load@example.org" });
        let clients = clients();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(clients)
            .build()
            .expect("client");
        let urls = [
            plugins.url("/v1/password/check"),
            native.url("/v1/password/check"),
        ];
        // Both modes answer alike (the native mode is a real implementation, not a stub).
        let mut answers = Vec::new();
        for url in &urls {
            let response = client.post(url).json(&body).send().await.expect("warm-up");
            assert!(response.status().is_success());
            let mut answer: serde_json::Value = response.json().await.expect("json");
            if let Some(answer) = answer.as_object_mut() {
                answer.remove("warnings");
            }
            answers.push(answer);
        }
        assert_eq!(answers[0], answers[1], "the native mode decides alike");

        for url in &urls {
            run(&client, url, &body, clients, WARMUP / 2).await;
        }
        let mut samples = [Samples::default(), Samples::default()];
        for _ in 0..SLICES {
            for (url, samples) in urls.iter().zip(samples.iter_mut()) {
                let started = Instant::now();
                samples
                    .latencies
                    .extend(run(&client, url, &body, clients, SLICE).await);
                samples.elapsed += started.elapsed();
            }
        }
        for samples in &mut samples {
            samples.latencies.sort_unstable();
        }
        let [wasm, native_samples] = &samples;
        println!(
            "{}",
            json!({
                "bench": "service/password-check",
                "median_ns": wasm.at(0.5),
                "p99_ns": wasm.at(0.99),
                "per_sec": wasm.per_sec(),
                "native_median_ns": native_samples.at(0.5),
                "native_p99_ns": native_samples.at(0.99),
                "native_per_sec": native_samples.per_sec(),
                "ratio": ((wasm.per_sec() / native_samples.per_sec().max(1.0)) * 1000.0).round() / 1000.0,
                "iterations": wasm.latencies.len(),
                "clients": clients,
            })
        );
        assert_eq!(
            hibp.server.request_count(),
            2,
            "the breach range was served from each service's cache throughout"
        );
    });
}
