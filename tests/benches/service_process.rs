//! The real `user-service` binary as a process: how fast it starts and how much memory it
//! holds under a load that fills its caches. Prints one JSON line per bench:
//!
//! - `startup/cold` and `startup/warm`: from exec to the first `GET /readyz` 200, with an empty
//!   compiled-artifact cache and with the cache the previous start left (median of 3 runs);
//! - `memory/varied-passwords`: the resident set (`rss_bytes`, and the peak `hwm_bytes`) after
//!   a fixed load of `POST /v1/password/check` with a different password each time, against a
//!   range server that answers like Pwned Passwords (≈ 900-line padded ranges, ~36 KB): every
//!   request caches a new range until the gateway's byte-bounded cache is full.
//!
//! Run with `cargo bench -p harness --bench service_process` (`-- --quick` for a brief run).
//! The service runs in a child process: this bench binary started with `--serve CONFIG`,
//! which does what the `user-service` binary does.

use harness::hibp::HibpServer;
use serde_json::json;
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Requests of the memory load (`--quick`: fewer).
fn load_requests() -> usize {
    if std::env::args().any(|arg| arg == "--quick") {
        1_000
    } else {
        10_000
    }
}
const LOAD_CLIENTS: usize = 16;
/// The README's targets; `--quick` fails only when a figure is more than 3× its target.
const WARM_START_TARGET: Duration = Duration::from_millis(300);
const RSS_TARGET_BYTES: u64 = 150 << 20;
const GROSS_REGRESSION: u32 = 3;
const STARTS: usize = 3;

/// `--serve CONFIG`: this process is the service (what the `user-service` binary's `main`
/// does, minus logging), so the figures are the service's own code in a process of its own,
/// without a second build of the workspace for the binary.
fn serve(config: &Path) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result: anyhow::Result<()> = runtime.block_on(async {
        let config = user_service::ServiceConfig::load(Some(config))?;
        user_service::run(config, std::future::pending()).await
    });
    eprintln!("the service stopped: {result:?}");
    std::process::exit(1)
}

/// A configuration in `dir`: SQLite and the artifact cache in `dir`, the bundled plugins, the
/// breach check against `hibp_url`; a free port.
fn write_config(dir: &Path, hibp_url: &str) -> (u16, PathBuf) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port();
    let config = dir.join("service.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{port}"
database-url = "sqlite://{data}/users.db"

[plugins]
dir = "{data}/plugins"
cache-dir = "{data}/cache"

[plugins.slots.breach-check.settings]
base-url = "{hibp_url}"

[[plugins.slots.breach-check.egress]]
url = "{hibp_url}/range/"
allow-private = true
cache-ttl-ms = 21600000
"#,
            data = dir.display()
        ),
    )
    .expect("write config");
    (port, config)
}

/// Starts the service (this binary with `--serve`); returns it and the time from exec to the
/// first ready answer.
fn start(config: &Path, port: u16) -> (Child, Duration) {
    let started = Instant::now();
    let child = Command::new(std::env::current_exe().expect("bench path"))
        .arg("--serve")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the user-service binary");
    harness::process::wait_ready(port, Duration::from_millis(2));
    (child, started.elapsed())
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

/// `VmRSS` and `VmHWM` of a process, in bytes.
fn resident_bytes(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map_or(0, |kib| kib * 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// `requests` password checks from [`LOAD_CLIENTS`] clients, each password different when
/// `varied` (so each asks for a new range), the same one otherwise.
async fn load(port: u16, requests: usize, varied: bool) {
    let url = format!("http://127.0.0.1:{port}/v1/password/check");
    let client = reqwest::Client::new();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..LOAD_CLIENTS {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let password = if varied {
                    format!("a varied passphrase, number {i} of the load")
                } else {
                    "the same passphrase for every request".to_owned()
                };
                let body = json!({ "password": password, "email": "load@example.org" });
                let response = client.post(&url).json(&body).send().await.expect("request");
                assert!(response.status().is_success(), "{}", response.status());
                let answer: serde_json::Value = response.json().await.expect("answer");
                assert!(
                    answer.get("breach").is_some(),
                    "the breach check ran: {answer}"
                );
            }
        }));
    }
    for client in clients {
        client.await.expect("load client");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--serve") {
        serve(Path::new(args.get(at + 1).expect("--serve CONFIG")));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let hibp = runtime.block_on(HibpServer::start(&[("password123", 1000)]));
    let hibp_url = hibp.server.url();

    // Start-up: cold (empty artifact cache) then warm (the cache that start left), in fresh
    // data directories each time so only the cache carries over.
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for _ in 0..STARTS {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, config) = write_config(dir.path(), &hibp_url);
        let (child, took) = start(&config, port);
        cold.push(took);
        stop(child);
        std::fs::remove_file(dir.path().join("users.db")).expect("fresh database");
        let (child, took) = start(&config, port);
        warm.push(took);
        stop(child);
    }
    let mut regressions = Vec::new();
    if median(warm.clone()) > WARM_START_TARGET * GROSS_REGRESSION {
        regressions.push(format!(
            "startup/warm: {:?} is more than {GROSS_REGRESSION}× the {WARM_START_TARGET:?} target",
            median(warm.clone())
        ));
    }
    for (bench, samples) in [("startup/cold", cold), ("startup/warm", warm)] {
        let runs = samples.len();
        println!(
            "{}",
            json!({ "bench": bench, "median_ns": median(samples).as_nanos() as u64, "runs": runs })
        );
    }

    // Memory under a load that caches a new ~36 KB range on every request, and, for
    // comparison, under the same load with one password (one range cached).
    let mut rss = 0;
    for (bench, varied) in [
        ("memory/varied-passwords", true),
        ("memory/same-password", false),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, config) = write_config(dir.path(), &hibp_url);
        let (child, _) = start(&config, port);
        let (idle_rss, _) = resident_bytes(child.id());
        let fetches_before = hibp.server.request_count();
        let requests = load_requests();
        let started = Instant::now();
        runtime.block_on(load(port, requests, varied));
        let elapsed = started.elapsed();
        let (resident, peak) = resident_bytes(child.id());
        stop(child);
        if varied {
            rss = resident;
        }
        println!(
            "{}",
            json!({
                "bench": bench,
                "rss_bytes": resident,
                "hwm_bytes": peak,
                "idle_rss_bytes": idle_rss,
                "requests": requests,
                "range_fetches": hibp.server.request_count() - fetches_before,
                "per_sec": (requests as f64 / elapsed.as_secs_f64()).round(),
            })
        );
    }
    if rss > RSS_TARGET_BYTES * u64::from(GROSS_REGRESSION) {
        regressions.push(format!(
            "memory/varied-passwords: {rss} bytes is more than {GROSS_REGRESSION}× the target"
        ));
    }
    if std::env::args().any(|arg| arg == "--quick") && !regressions.is_empty() {
        eprintln!("gross regressions against the README's targets: {regressions:#?}");
        std::process::exit(1);
    }
}
