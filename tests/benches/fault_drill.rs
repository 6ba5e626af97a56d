//! Fault drill benchmark: for each fault kind, breach-check throughput with a healthy upstream
//! and under the fault once the breaker has opened, in the same run. Prints one JSON object per
//! line:
//! `{"bench":"fault/<kind>","per_sec","p99_ns","healthy_per_sec","ratio","breaker_opened","iterations"}`
//! where `per_sec` and `p99_ns` are under the fault and `ratio` is `per_sec ÷ healthy_per_sec`.
//!
//! Both phases make the same call: the breach check of a password never checked before, so each
//! healthy decision is a real loopback exchange with a local range server (`harness::faults`),
//! and each decision under the fault meets the open breaker. Decisions run one at a time on a
//! current-thread tokio runtime, like `decisions`; only driving the breaker open uses 8 at once.
//! If the breaker does not open within 5 s, the fault phase is measured anyway (capped in time)
//! and the line says `"breaker_opened": false`.
//!
//! `cargo bench -p harness --bench fault_drill` (add `-- --quick` for a short run, or a name
//! such as `-- hang` for one kind). Name lookups go to DNS servers the drill starts on
//! 127.0.0.1 (the gateway's `dns-servers`), never to the machine's resolver.

use futures_util::future::join_all;
use harness::faults::{self, BREACH_SLOT, Fault, FaultServer, Mode};
use policy_host::{PolicyHost, egress::breaker::BreakerState};
use serde_json::json;
use std::time::{Duration, Instant};

/// Range server corpus: the benches only need the range format, not hits.
const CORPUS: &[(&str, u64)] = &[("password123", 2_254_650)];
/// Decisions in flight at once while driving the breaker open.
const CONCURRENCY: usize = 8;
/// How long the breaker has to open.
const OPEN_WITHIN: Duration = Duration::from_secs(5);
/// `open-ms` for the bench: longer than any measured phase, so it stays open throughout.
const OPEN_FOR: Duration = Duration::from_mins(1);

/// How much to measure.
struct Plan {
    warmup: usize,
    healthy_iterations: usize,
    fault_iterations: usize,
    /// Each measured phase stops after this long even if iterations remain.
    phase_cap: Duration,
}

impl Plan {
    fn from_args() -> Self {
        if std::env::args().any(|arg| arg == "--quick") {
            Self {
                warmup: 20,
                healthy_iterations: 300,
                fault_iterations: 3_000,
                phase_cap: Duration::from_millis(1_500),
            }
        } else {
            Self {
                warmup: 100,
                healthy_iterations: 2_000,
                fault_iterations: 20_000,
                phase_cap: Duration::from_secs(5),
            }
        }
    }
}

/// `cargo bench -p harness --bench fault_drill -- <filter>` runs only kinds whose name contains
/// the filter.
fn selected(kind: &str) -> bool {
    std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .all(|filter| kind.contains(&filter))
}

/// Timing of one measured phase.
struct Summary {
    p99_ns: u64,
    per_sec: f64,
    iterations: usize,
}

/// One breach-check host and the source of never-seen passwords it checks.
struct Checker {
    host: PolicyHost,
    _dir: harness::PluginDir,
    base_url: String,
    label: String,
    next: usize,
}

impl Checker {
    async fn start(base_url: String, dns_servers: Vec<std::net::SocketAddr>, label: &str) -> Self {
        let (dir, host) = faults::breach_host(&base_url, &dns_servers, OPEN_FOR)
            .await
            .expect("breach-check host");
        Self {
            host,
            _dir: dir,
            base_url,
            label: label.to_owned(),
            next: 0,
        }
    }

    fn fresh_password(&mut self) -> String {
        self.next += 1;
        faults::drill_password(&self.label, self.next)
    }

    /// The breach check of a password never checked before.
    async fn check_fresh(&mut self) {
        let password = self.fresh_password();
        std::hint::black_box(self.host.check_breach(BREACH_SLOT, &password).await);
    }

    fn breaker(&self) -> Option<BreakerState> {
        faults::breaker_state(&self.host, BREACH_SLOT, &self.base_url)
    }

    /// Decides [`CONCURRENCY`] at a time until the breaker opens; false if it did not within
    /// [`OPEN_WITHIN`].
    async fn drive_open(&mut self) -> bool {
        let started = Instant::now();
        while started.elapsed() < OPEN_WITHIN {
            if self.breaker() == Some(BreakerState::Open) {
                return true;
            }
            let passwords: Vec<String> = (0..CONCURRENCY).map(|_| self.fresh_password()).collect();
            let host = &self.host;
            join_all(
                passwords
                    .iter()
                    .map(|password| host.check_breach(BREACH_SLOT, password)),
            )
            .await;
        }
        self.breaker() == Some(BreakerState::Open)
    }

    /// Runs `warmup` unmeasured decisions, then up to `iterations` measured ones within `cap`.
    async fn measure(&mut self, warmup: usize, iterations: usize, cap: Duration) -> Summary {
        for _ in 0..warmup {
            self.check_fresh().await;
        }
        let mut samples = Vec::with_capacity(iterations);
        let started = Instant::now();
        while samples.len() < iterations && started.elapsed() < cap {
            let before = Instant::now();
            self.check_fresh().await;
            samples.push(before.elapsed());
        }
        summarise(samples, started.elapsed())
    }
}

fn summarise(mut samples: Vec<Duration>, total: Duration) -> Summary {
    samples.sort_unstable();
    let at = ((samples.len().saturating_sub(1)) as f64 * 0.99).round() as usize;
    Summary {
        p99_ns: samples.get(at).map_or(0, |sample| sample.as_nanos() as u64),
        per_sec: samples.len() as f64 / total.as_secs_f64(),
        iterations: samples.len(),
    }
}

/// Healthy throughput, then throughput under `fault` once the breaker has opened.
async fn drill(fault: Fault, plan: &Plan) {
    let server = FaultServer::range_api(CORPUS).await;
    let mut checker = Checker::start(
        server.base_url(fault),
        server.dns_servers(fault),
        fault.name(),
    )
    .await;
    // Where the fault is the destination itself, the healthy baseline is the same call to the
    // same server through a healthy destination.
    let healthy = if fault.clears() {
        checker
            .measure(plan.warmup, plan.healthy_iterations, plan.phase_cap)
            .await
    } else {
        let mut baseline =
            Checker::start(server.url(), server.dns_servers(fault), fault.name()).await;
        baseline
            .measure(plan.warmup, plan.healthy_iterations, plan.phase_cap)
            .await
    };

    server.set_mode(Mode::Faulty(fault)).await;
    let opened = checker.drive_open().await;
    let faulty = checker
        .measure(0, plan.fault_iterations, plan.phase_cap)
        .await;
    report(fault, &faulty, &healthy, opened);
}

fn report(fault: Fault, faulty: &Summary, healthy: &Summary, opened: bool) {
    let ratio = faulty.per_sec / healthy.per_sec.max(f64::MIN_POSITIVE);
    let line = json!({
        "bench": format!("fault/{}", fault.name()),
        "per_sec": faulty.per_sec.round(),
        "p99_ns": faulty.p99_ns,
        "healthy_per_sec": healthy.per_sec.round(),
        "ratio": (ratio * 100.0).round() / 100.0,
        "breaker_opened": opened,
        "iterations": faulty.iterations,
    });
    println!("{line}");
}

fn main() {
    let plan = Plan::from_args();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        for fault in Fault::ALL {
            if selected(fault.name()) {
                drill(fault, &plan).await;
            }
        }
    });
}
