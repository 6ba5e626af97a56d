//! The breaker drill, for every fault kind and both network slots (breach check, CAPTCHA):
//!
//! 1. **opens**: 8 concurrent decisions against the faulty upstream; the destination's breaker
//!    must open within its minimum number of calls plus the 8 in flight;
//! 2. **fails fast**: while it is open, decisions apply the slot's fail policy (breach check:
//!    allow with `breach-check-unavailable`; CAPTCHA: deny with `captcha-unavailable`) with a
//!    p99 under 5 ms, sampled one at a time;
//! 3. **recovers**: the upstream turns healthy; after `open-ms` the breaker is half-open, and two
//!    good probes close it, with real answers again (a known breached password is denied as
//!    breached; a token passes). Where the fault belongs to the destination and cannot clear
//!    (`tls-failure`, `nxdomain`, `dns-hang`: see `harness::faults`), a probe fails and the
//!    breaker opens again instead.
//!
//! Each kind and slot is its own test (`<kind>::breach_check`, `<kind>::captcha`).

use harness::{
    faults::{
        self, BREACH_SLOT, CAPTCHA_SLOT, Fault, FaultServer, HALF_OPEN_PROBES, MINIMUM_CALLS, Mode,
    },
    wait_until,
};
use policy_host::{BreachOutcome, PolicyHost, Verdict, egress::breaker::BreakerState};
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::task::JoinSet;

/// Decisions in flight at once while the fault lasts.
const CONCURRENCY: usize = 8;
/// How long the breaker has to open (a hanging upstream costs a first-byte timeout a round).
const OPEN_WITHIN: Duration = Duration::from_secs(5);
/// How long the breaker stays open: short, so a drill is quick.
const OPEN_FOR: Duration = Duration::from_secs(1);
/// How long decisions are sampled while it is open (well inside `OPEN_FOR`).
const OPEN_SAMPLE: Duration = Duration::from_millis(400);
/// The p99 a decision may take while the breaker is open.
const FAST_P99: Duration = Duration::from_millis(5);

const CORPUS: &[(&str, u64)] = &[("password123", 2_254_650), ("hunter2", 17_000)];

/// Which slot a drill exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    BreachCheck,
    Captcha,
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Slot::BreachCheck => BREACH_SLOT,
            Slot::Captcha => CAPTCHA_SLOT,
        }
    }
}

/// What a decision said, reduced to what the drill checks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// The upstream was unavailable and the slot's default fail policy decided: allow with
    /// `breach-check-unavailable`, or deny with `captcha-unavailable`.
    FailPolicy,
    /// A real breach answer: the password was found this many times and denied.
    Breached(u64),
    /// A real breach answer: not found, allowed.
    Clean,
    /// A real CAPTCHA answer: the token passed.
    Passed,
    /// Anything else, described.
    Other(String),
}

/// A host with one slot pointed at a fault server.
struct Drill {
    slot: Slot,
    fault: Fault,
    server: FaultServer,
    /// The slot's base URL, which is also its destination's origin.
    base_url: String,
    host: Arc<PolicyHost>,
    _dir: harness::PluginDir,
}

impl Drill {
    /// A healthy server, and a host whose `slot` calls it the way `fault` needs.
    async fn start(slot: Slot, fault: Fault) -> Self {
        let server = match slot {
            Slot::BreachCheck => FaultServer::range_api(CORPUS).await,
            Slot::Captcha => FaultServer::turnstile().await,
        };
        let base_url = server.base_url(fault);
        let _quiet = QUIET.lock().await;
        let (dir, host) = match slot {
            Slot::BreachCheck => {
                faults::breach_host(&base_url, &server.dns_servers(fault), OPEN_FOR).await
            }
            Slot::Captcha => {
                faults::captcha_host(&base_url, &server.dns_servers(fault), OPEN_FOR).await
            }
        }
        .expect("the drill's host starts");
        Self {
            slot,
            fault,
            server,
            base_url,
            host: Arc::new(host),
            _dir: dir,
        }
    }

    fn breaker(&self) -> Option<BreakerState> {
        faults::breaker_state(&self.host, self.slot.name(), &self.base_url)
    }

    fn is_open(&self) -> bool {
        self.breaker() == Some(BreakerState::Open)
    }

    /// A label for messages: `breach-check/hang`.
    fn label(&self) -> String {
        format!("{}/{}", self.slot.name(), self.fault.name())
    }
}

/// One decision: the breach check of `password`, or the CAPTCHA check of a fresh token `n`.
async fn decide(host: &PolicyHost, slot: Slot, password: &str, n: usize) -> Seen {
    match slot {
        Slot::BreachCheck => breach_seen(host, password).await,
        Slot::Captcha => captcha_seen(host, n).await,
    }
}

async fn breach_seen(host: &PolicyHost, password: &str) -> Seen {
    let checked = host.check_breach(BREACH_SLOT, password).await;
    let decision = &checked.record.decision;
    let fail_policy = checked.record.fail_policy_applied.is_some();
    match &checked.outcome {
        BreachOutcome::Unknown { .. }
            if decision.verdict == Verdict::Allow
                && decision.codes() == ["breach-check-unavailable"]
                && fail_policy =>
        {
            Seen::FailPolicy
        }
        BreachOutcome::Breached { count }
            if decision.verdict == Verdict::Deny && decision.codes() == ["breached"] =>
        {
            Seen::Breached(*count)
        }
        BreachOutcome::Clean if decision.verdict == Verdict::Allow && !fail_policy => Seen::Clean,
        outcome => Seen::Other(format!(
            "{outcome:?}, {:?} {:?}, fail policy {:?}",
            decision.verdict,
            decision.codes(),
            checked.record.fail_policy_applied
        )),
    }
}

async fn captcha_seen(host: &PolicyHost, n: usize) -> Seen {
    let record = host
        .verify_captcha(CAPTCHA_SLOT, &faults::drill_captcha("matrix", n))
        .await;
    let decision = &record.decision;
    let fail_policy = record.fail_policy_applied.is_some();
    if decision.verdict == Verdict::Deny
        && decision.codes() == ["captcha-unavailable"]
        && fail_policy
    {
        Seen::FailPolicy
    } else if decision.verdict == Verdict::Allow && decision.codes().is_empty() && !fail_policy {
        Seen::Passed
    } else {
        Seen::Other(format!(
            "{:?} {:?}, fail policy {:?}",
            decision.verdict,
            decision.codes(),
            record.fail_policy_applied
        ))
    }
}

/// Unique call numbers and passwords across a drill's phases.
struct Calls {
    next: AtomicUsize,
    label: String,
}

impl Calls {
    fn take(&self) -> (usize, String) {
        let n = self.next.fetch_add(1, Ordering::SeqCst);
        (n, faults::drill_password(&self.label, n))
    }
}

/// Phase 1: [`CONCURRENCY`] tasks decide until the breaker opens (or [`OPEN_WITHIN`] passes);
/// returns how many decisions started while it was not open and when it was seen open, or why
/// it never opened.
async fn drive_until_open(drill: &Drill, calls: &Arc<Calls>) -> Result<(usize, Instant), String> {
    let started = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for _ in 0..CONCURRENCY {
        let (host, slot, base_url) = (drill.host.clone(), drill.slot, drill.base_url.clone());
        let (started, stop, calls) = (started.clone(), stop.clone(), calls.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::SeqCst)
                && faults::breaker_state(&host, slot.name(), &base_url) != Some(BreakerState::Open)
            {
                started.fetch_add(1, Ordering::SeqCst);
                let (n, password) = calls.take();
                decide(&host, slot, &password, n).await;
            }
        });
    }
    let opened = wait_until(OPEN_WITHIN, || async { drill.is_open() }).await;
    let seen_open = Instant::now();
    stop.store(true, Ordering::SeqCst);
    // Decisions still waiting on the fault (a hang) are cut off: they are not measured.
    tasks.shutdown().await;
    let started = started.load(Ordering::SeqCst);
    match opened {
        Some(_) => Ok((started, seen_open)),
        None => Err(format!(
            "{}: the breaker did not open within {OPEN_WITHIN:?} ({started} decisions, state \
             {:?}, slow-call-ms known to the gateway: {})",
            drill.label(),
            drill.breaker(),
            faults::slow_calls_configurable()
        )),
    }
}

/// Held while a drill starts its host (compiling the plugin takes both cores) or samples
/// latencies, so the drills running in parallel threads never do either while another samples:
/// each measures its own decisions.
static QUIET: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Phase 2: decisions one at a time for [`OPEN_SAMPLE`], like the benches: each one's latency
/// and what it said. (Eight at a time on this 2-core VM would measure the queue, and the
/// neighbours' preemptions of it, more than the decisions.) Sampling ends early rather than
/// run into the half-open state, which comes [`OPEN_FOR`] after `seen_open` at the earliest.
async fn sample_while_open(
    drill: &Drill,
    calls: &Calls,
    seen_open: Instant,
) -> Vec<(Duration, Seen)> {
    let _quiet = QUIET.lock().await;
    let mut samples = Vec::new();
    let until = (Instant::now() + OPEN_SAMPLE)
        .min((seen_open + OPEN_FOR).checked_sub(OPEN_SAMPLE / 4).unwrap());
    while Instant::now() < until {
        let (n, password) = calls.take();
        let before = Instant::now();
        let seen = decide(&drill.host, drill.slot, &password, n).await;
        samples.push((before.elapsed(), seen));
    }
    samples
}

/// The `q` quantile of sorted `latencies`.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Checks phase 2: all fail-policy answers, fast.
fn assert_fast_fail_policy(drill: &Drill, samples: Vec<(Duration, Seen)>) {
    let label = drill.label();
    assert!(
        samples.len() >= 50,
        "{label}: only {} decisions in {OPEN_SAMPLE:?} with the breaker open",
        samples.len()
    );
    let wrong: Vec<&Seen> = samples
        .iter()
        .map(|(_, seen)| seen)
        .filter(|seen| **seen != Seen::FailPolicy)
        .collect();
    assert!(
        wrong.is_empty(),
        "{label}: {} of {} decisions while open were not the fail policy, e.g. {:?}",
        wrong.len(),
        samples.len(),
        &wrong[..wrong.len().min(3)]
    );
    let mut latencies: Vec<Duration> = samples.iter().map(|(took, _)| *took).collect();
    latencies.sort_unstable();
    let p99 = quantile(&latencies, 0.99);
    assert!(
        p99 < FAST_P99,
        "{label}: p99 {p99:?} while the breaker is open (want < {FAST_P99:?}); median {:?}, \
         max {:?}, {} decisions",
        quantile(&latencies, 0.5),
        quantile(&latencies, 1.0),
        latencies.len()
    );
    assert!(
        drill.is_open(),
        "{label}: still open after sampling, so every sample met an open breaker"
    );
}

/// Waits out `open-ms`: the breaker must report half-open.
async fn wait_for_half_open(drill: &Drill) {
    let label = drill.label();
    let over = wait_until(OPEN_FOR * 3, || async { !drill.is_open() }).await;
    assert!(
        over.is_some(),
        "{label}: still open after {:?}",
        OPEN_FOR * 3
    );
    assert_eq!(
        drill.breaker(),
        Some(BreakerState::HalfOpen),
        "{label}: half-open once open-ms is over"
    );
}

/// A real answer from a probe: a known breached password (breach check), a passing token.
async fn real_probe(drill: &Drill, password: &str, count: u64, n: usize) {
    let seen = decide(&drill.host, drill.slot, password, n).await;
    let expected = match drill.slot {
        Slot::BreachCheck => Seen::Breached(count),
        Slot::Captcha => Seen::Passed,
    };
    assert_eq!(seen, expected, "{}: a real answer again", drill.label());
}

/// Phase 3 where the fault clears: healthy upstream, half-open, two good probes close it.
async fn assert_recovers(drill: &Drill, calls: &Calls) {
    let label = drill.label();
    drill.server.set_mode(Mode::Healthy).await;
    wait_for_half_open(drill).await;
    assert_eq!(HALF_OPEN_PROBES, 2, "the probes below are two");
    let before = drill.server.request_count();
    real_probe(drill, "password123", 2_254_650, calls.take().0).await;
    assert_eq!(
        drill.breaker(),
        Some(BreakerState::HalfOpen),
        "{label}: one good probe of two: still half-open"
    );
    real_probe(drill, "hunter2", 17_000, calls.take().0).await;
    assert_eq!(
        drill.breaker(),
        Some(BreakerState::Closed),
        "{label}: two good probes close it"
    );
    assert_eq!(
        drill.server.request_count(),
        before + 2,
        "{label}: both probes reached the upstream"
    );
    let (n, password) = calls.take();
    let after = decide(&drill.host, drill.slot, &password, n).await;
    let expected = match drill.slot {
        Slot::BreachCheck => Seen::Clean,
        Slot::Captcha => Seen::Passed,
    };
    assert_eq!(after, expected, "{label}: closed, traffic flows");
}

/// Phase 3 where the fault cannot clear at this destination: the half-open probe fails and the
/// breaker opens again.
async fn assert_failed_probe_reopens(drill: &Drill, calls: &Calls) {
    let label = drill.label();
    wait_for_half_open(drill).await;
    let (n, password) = calls.take();
    assert_eq!(
        decide(&drill.host, drill.slot, &password, n).await,
        Seen::FailPolicy,
        "{label}: the probe meets the fault"
    );
    assert_eq!(
        drill.breaker(),
        Some(BreakerState::Open),
        "{label}: a failed probe opens the breaker again"
    );
}

/// The whole drill for one slot and fault.
async fn drill(slot: Slot, fault: Fault) {
    let _exclusive = harness::exclusive().await;
    let drill = Drill::start(slot, fault).await;
    let calls = Arc::new(Calls {
        next: AtomicUsize::new(0),
        label: drill.label(),
    });
    drill.server.set_mode(Mode::Faulty(fault)).await;

    let (started, seen_open) = drive_until_open(&drill, &calls)
        .await
        .unwrap_or_else(|message| panic!("{message}"));
    let most = MINIMUM_CALLS as usize + CONCURRENCY;
    assert!(
        started <= most,
        "{}: opened after {started} decisions (want ≤ minimum-calls {MINIMUM_CALLS} + {CONCURRENCY} in flight)",
        drill.label()
    );

    let samples = sample_while_open(&drill, &calls, seen_open).await;
    assert_fast_fail_policy(&drill, samples);

    if fault.clears() {
        assert_recovers(&drill, &calls).await;
    } else {
        assert_failed_probe_reopens(&drill, &calls).await;
    }
}

/// `mod <kind> { breach_check, captcha }` for each fault kind.
macro_rules! drills {
    ($($kind:ident => $fault:expr),* $(,)?) => {$(
        mod $kind {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn breach_check() {
                drill(Slot::BreachCheck, $fault).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn captcha() {
                drill(Slot::Captcha, $fault).await;
            }
        }
    )*};
}

drills! {
    refused => Fault::Refused,
    hang => Fault::Hang,
    slow => Fault::Slow,
    status_5xx => Fault::Status5xx,
    reset => Fault::Reset,
    tls_failure => Fault::TlsFailure,
    nxdomain => Fault::Nxdomain,
    dns_hang => Fault::DnsHang,
}
