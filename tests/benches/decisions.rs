//! Decision benchmarks. Prints one JSON object per line:
//! `{"bench", "median_ns", "p99_ns", "per_sec", "iterations"}` and, where the same work also
//! runs natively in the same run, `"native_median_ns"` and `"ratio"` (host ÷ native).
//!
//! Run with `cargo bench -p harness --bench decisions`. Decisions run one at a time on a
//! current-thread tokio runtime (what one core can do); `per_sec` is measured throughput.

use harness::{hibp, host_with_breach_check, host_with_password_policy, password, quick_policy};
use policy_host::{PasswordInput, PolicyHost};
use serde_json::json;
use std::time::{Duration, Instant};

/// How long each line runs: the full run by default; `--quick` (what CI runs) measures each
/// line briefly and fails only on a gross regression against the README's ratios.
/// `BENCH_ITERATIONS` overrides the count (e.g. a handful under callgrind).
struct Plan {
    warmup: usize,
    iterations: usize,
    quick: bool,
}

fn plan() -> Plan {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let iterations = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(if quick { 2_000 } else { 20_000 });
    Plan {
        warmup: if quick { 200 } else { 500 }.min(iterations),
        iterations,
        quick,
    }
}

/// Host ÷ native median ratios as the README reports them; `--quick` fails a line whose ratio
/// is more than [`GROSS_REGRESSION`] times its figure here.
const README_RATIOS: &[(&str, f64)] = &[
    ("password-policy/host", 4.3),
    ("breach-check/host-cached", 29.0),
    ("breach-check/host-cached-miss", 31.0),
    ("captcha/host-local-provider", 86.0),
];
const GROSS_REGRESSION: f64 = 3.0;

/// The password inputs every run cycles through: accepted and rejected, ASCII and not.
fn inputs() -> Vec<PasswordInput> {
    let context = vec![
        "maria.gonzalez@example.org".to_owned(),
        "Maria Gonzalez".to_owned(),
    ];
    [
        "correct horse battery staple",
        "password1234567",
        "Grüße aus München, lieber Freund",
        "ｐａｓｓｗｏｒｄ１２３４５６７",
        "MariaGonzalez2024",
        "abcdefghijklmnopq",
        "the quiet harbour keeps its lanterns lit for every late sailor!!",
    ]
    .into_iter()
    .map(|candidate| PasswordInput {
        password: candidate.to_owned(),
        has_mfa: false,
        context_words: context.clone(),
    })
    .collect()
}

/// `cargo bench -p harness --bench decisions -- <filter>` runs only benches whose name contains
/// the filter (the others still run, for their native baselines, but print nothing).
fn selected(bench: &str) -> bool {
    std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .all(|filter| bench.contains(&filter))
}

/// True when no filter is given, or a filter names this group or one of its benches.
fn group_selected(group: &str) -> bool {
    std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with("--"))
        .all(|filter| group.contains(&filter) || filter.contains(group))
}

/// Timing summary of one benchmark.
struct Summary {
    median_ns: u64,
    p99_ns: u64,
    per_sec: f64,
    iterations: usize,
}

/// Runs `step` for the plan's warm-up and iterations, timing each measured call. `step` gets
/// a call number unique across warm-up and measurement.
async fn measure<F, Fut>(step: F) -> Summary
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let plan = plan();
    measure_n(plan.iterations, step).await
}

/// [`measure`] with a chosen number of measured iterations (at most the plan's).
async fn measure_n<F, Fut>(iterations: usize, mut step: F) -> Summary
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let plan = plan();
    let iterations = iterations.min(plan.iterations);
    for i in 0..plan.warmup {
        step(i).await;
    }
    let mut samples = Vec::with_capacity(iterations);
    let mut scratch = vec![0u8; evict_kib() * 1024];
    for i in plan.warmup..plan.warmup + iterations {
        evict_caches(&mut scratch);
        let before = Instant::now();
        step(i).await;
        samples.push(before.elapsed());
    }
    summarise(samples)
}

/// The native and the hosted variant of the same work, interleaved call by call (ABAB), so
/// whatever the machine's neighbours do hits both alike. Returns (native, host).
async fn measure_pair<N, NFut, H, HFut>(
    iterations: usize,
    mut native: N,
    mut host: H,
) -> (Summary, Summary)
where
    N: FnMut(usize) -> NFut,
    NFut: std::future::Future<Output = ()>,
    H: FnMut(usize) -> HFut,
    HFut: std::future::Future<Output = ()>,
{
    let plan = plan();
    let iterations = iterations.min(plan.iterations);
    for i in 0..plan.warmup {
        native(i).await;
        host(i).await;
    }
    let mut native_samples = Vec::with_capacity(iterations);
    let mut host_samples = Vec::with_capacity(iterations);
    let mut scratch = vec![0u8; evict_kib() * 1024];
    for i in plan.warmup..plan.warmup + iterations {
        evict_caches(&mut scratch);
        let before = Instant::now();
        native(i).await;
        native_samples.push(before.elapsed());
        evict_caches(&mut scratch);
        let before = Instant::now();
        host(i).await;
        host_samples.push(before.elapsed());
    }
    (summarise(native_samples), summarise(host_samples))
}

/// `BENCH_EVICT_KIB`: KiB of memory written before each measured call (default 0). A few MiB (this machine's L2 is 2 MiB a core) leave each call with the cold
/// caches a decision meets inside the service, where HTTP, JSON and the client run between two
/// decisions.
fn evict_kib() -> usize {
    std::env::var("BENCH_EVICT_KIB")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// Writes one byte per cache line of `scratch` (untimed): what was cached before is evicted.
fn evict_caches(scratch: &mut [u8]) {
    for line in scratch.chunks_mut(64) {
        line[0] = line[0].wrapping_add(1);
    }
    std::hint::black_box(scratch);
}

fn summarise(mut samples: Vec<Duration>) -> Summary {
    let total: Duration = samples.iter().sum();
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_nanos() as u64;
    Summary {
        median_ns: at(0.5),
        p99_ns: at(0.99),
        per_sec: samples.len() as f64 / total.as_secs_f64(),
        iterations: samples.len(),
    }
}

fn report(bench: &str, host: &Summary, native: Option<&Summary>) {
    if !selected(bench) {
        return;
    }
    let mut line = json!({
        "bench": bench,
        "median_ns": host.median_ns,
        "p99_ns": host.p99_ns,
        "per_sec": host.per_sec.round(),
        "iterations": host.iterations,
    });
    if let Some(native) = native {
        let ratio = host.median_ns as f64 / native.median_ns.max(1) as f64;
        line["native_median_ns"] = json!(native.median_ns);
        line["ratio"] = json!((ratio * 100.0).round() / 100.0);
        if plan().quick
            && let Some((_, reference)) = README_RATIOS.iter().find(|(name, _)| *name == bench)
            && ratio > reference * GROSS_REGRESSION
        {
            REGRESSIONS.lock().expect("regressions").push(format!(
                "{bench}: ratio {ratio:.1} is more than {GROSS_REGRESSION}× the README's {reference}"
            ));
        }
    }
    println!("{line}");
}

/// Lines that regressed grossly in a `--quick` run.
static REGRESSIONS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

async fn password_policy_benches(host: &PolicyHost) {
    let inputs = inputs();
    let settings = password_policy::settings::PolicySettings::default();
    let (native, hosted) = measure_pair(
        usize::MAX,
        |i| {
            let input = &inputs[i % inputs.len()];
            let outcome = password_policy::rules::evaluate(
                password_policy::rules::PasswordInput {
                    password: &input.password,
                    has_mfa: input.has_mfa,
                    context_words: &input.context_words,
                },
                &settings,
            );
            std::hint::black_box(outcome);
            async {}
        },
        |i| {
            let input = &inputs[i % inputs.len()];
            async move {
                let record = host
                    .try_evaluate_password("password-policy", input)
                    .await
                    .expect("decision");
                std::hint::black_box(record);
            }
        },
    )
    .await;
    report("password-policy/native", &native, None);
    report("password-policy/host", &hosted, Some(&native));

    instantiate_bench(host, "password-policy").await;
}

/// Instantiating a fresh instance of the plugin in `slot` alone; returns the plugin.
async fn instantiate_bench(
    host: &PolicyHost,
    slot: &str,
) -> std::sync::Arc<policy_host::loaded::LoadedPlugin> {
    let plugin = host
        .catalog()
        .slot(slot)
        .and_then(policy_host::catalog::Slot::current)
        .expect("loaded");
    let engine = host.catalog().engine().clone();
    let instantiate = measure(|_| {
        let (plugin, engine) = (&plugin, &engine);
        async move { plugin.instantiate_only(engine).await.expect("instantiate") }
    })
    .await;
    report(&format!("instantiate/{slot}"), &instantiate, None);
    plugin
}

/// The breach check of a password whose range the gateway has cached, against the same work
/// natively (SHA-1, and the lookup in the same body). The range is the size and shape of a
/// real padded answer (`hibp::range_body`: 900 lines, sorted, CRLF, count-0 padding); one line
/// looks up a breached password (its line wherever sorting puts it), one a password that is
/// not in the corpus (the whole body scanned).
async fn breach_check_benches() {
    let breached = [("password123", 2_254_650u64)];
    let server = hibp::HibpServer::start(&breached).await;
    let (_dir, host) = host_with_breach_check(&server.server.url(), quick_policy(), &[])
        .await
        .expect("breach-check host");
    let corpus = hibp::corpus(&breached);
    for (line, password) in [
        ("breach-check/host-cached", "password123"),
        (
            "breach-check/host-cached-miss",
            "a password nobody has used",
        ),
    ] {
        let first = host.check_breach("breach-check", password).await;
        let expected = match breached.iter().find(|(known, _)| *known == password) {
            Some((_, count)) => policy_host::BreachOutcome::Breached { count: *count },
            None => policy_host::BreachOutcome::Clean,
        };
        assert_eq!(first.outcome, expected, "{line}: the decision is real");
        let (prefix, suffix) = breach_check::hash::prefix_and_suffix(password);
        let body = hibp::range_body(&corpus, &prefix, true);
        assert_eq!(body.lines().count(), hibp::PADDED_RANGE_LINES);
        let native_answer = breach_check::lookup_in_response(200, body.as_bytes(), &suffix);
        assert_eq!(
            native_answer,
            match expected {
                policy_host::BreachOutcome::Breached { count } =>
                    breach_check::Lookup::Count(count),
                _ => breach_check::Lookup::Count(0),
            },
            "{line}: the native lookup reads the same body"
        );
        let (native, hosted) = measure_pair(
            usize::MAX,
            |_| {
                let (_, suffix) =
                    breach_check::hash::prefix_and_suffix(std::hint::black_box(password));
                std::hint::black_box(breach_check::lookup_in_response(
                    200,
                    body.as_bytes(),
                    &suffix,
                ));
                async {}
            },
            |_| {
                let host = &host;
                async move {
                    std::hint::black_box(host.check_breach("breach-check", password).await);
                }
            },
        )
        .await;
        report(&line.replace("host-cached", "native"), &native, None);
        report(line, &hosted, Some(&native));
    }
    assert_eq!(
        server.server.request_count(),
        2,
        "every measured decision was served from the cache"
    );

    let plugin = instantiate_bench(&host, "breach-check").await;
    let engine = host.catalog().engine().clone();

    // The gateway alone, serving the cached range: the host side of the request.
    let egress = plugin
        .egress()
        .expect("a network plugin has egress")
        .clone();
    let (prefix, _) = breach_check::hash::prefix_and_suffix("password123");
    let url = format!("{}/range/{prefix}", server.server.url());
    let gateway = measure(|_| {
        let (engine, egress, url) = (&engine, &egress, &url);
        async move {
            let request = http::Request::get(url.as_str())
                .header("add-padding", "true")
                .body(bytes::Bytes::new())
                .expect("request");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
            std::hint::black_box(
                engine
                    .gateway()
                    .send(egress, request, None, deadline)
                    .await
                    .expect("cached"),
            );
        }
    })
    .await;
    report("egress/cached-get", &gateway, None);
}

/// A host whose `captcha` slot verifies with the Turnstile simulator at `server`; `pooled`
/// keeps connections to it alive between decisions (the default), or not.
async fn captcha_host(
    server: &harness::captcha_vendors::CaptchaServer,
    pooled: bool,
) -> (harness::PluginDir, PolicyHost) {
    use harness::captcha_vendors::{self as vendors, Vendor};
    use policy_host::egress::config::{DestinationConfig, SecretSource};
    let dir = harness::PluginDir::new().expect("plugin dir");
    dir.publish(
        "captcha",
        std::path::Path::new(bundled_plugins::CAPTCHA.path),
    )
    .expect("publish");
    let mut config = dir.config();
    config.egress.secrets.insert(
        "captcha-secret".to_owned(),
        SecretSource::Value(vendors::TURNSTILE_PASS_SECRET.to_owned()),
    );
    if !pooled {
        config.egress.pool.max_idle_per_host = 0;
    }
    let mut slot = harness::slot(
        policy_host::PluginKind::Captcha,
        &[("provider", "turnstile"), ("base-url", &server.url())],
    );
    slot.egress = vec![DestinationConfig {
        url: format!("{}{}", server.url(), Vendor::Turnstile.path()),
        allow_private: true,
        secrets: vec!["captcha-secret".to_owned()],
        cache_ttl: None,
        idempotency_header: Some("idempotency-key".to_owned()),
        policy: Some(quick_policy()),
    }];
    config.slots.insert("captcha".to_owned(), slot);
    let host = PolicyHost::start(&config).await.expect("captcha host");
    (dir, host)
}

/// A CAPTCHA decision against a local Turnstile simulator (its always-pass test secret), each
/// with a fresh token, over pooled keep-alive connections and, in a second line, over a new
/// connection each time; natively, the same JSON parse and judgement.
async fn captcha_benches() {
    use harness::captcha_vendors::{self as vendors, CaptchaServer, Vendor};
    /// One decision with a fresh token.
    async fn decide(host: &PolicyHost, i: usize) {
        let input = policy_host::CaptchaInput {
            token: format!("token-{i}"),
            action: "login".to_owned(),
            remote_ip: None,
            idempotency_key: None,
        };
        let record = host.verify_captcha("captcha", &input).await;
        assert_eq!(
            record.decision.verdict,
            policy_host::Verdict::Allow,
            "decision {i}: {:?}",
            record.decision.codes()
        );
    }
    let server = CaptchaServer::start(Vendor::Turnstile).await;
    let body = format!(
        r#"{{"success":true,"error-codes":[],"challenge_ts":"{}","hostname":"example.com","action":"","cdata":""}}"#,
        vendors::rfc3339_now()
    );
    let (settings, _) = captcha::settings::CaptchaSettings::from_lookup(|key| {
        (key == "provider").then(|| "turnstile".to_owned())
    })
    .expect("settings");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let native = |_| {
        let answer: captcha::verdict::SiteverifyAnswer =
            serde_json::from_str(&body).expect("answer");
        std::hint::black_box(captcha::verdict::judge(&answer, "login", &settings, now));
        async {}
    };
    for (line, pooled, iterations) in [
        ("captcha/host-local-provider", true, usize::MAX),
        // A connection per decision: fewer iterations keep the ephemeral ports (and
        // TIME_WAIT) in check.
        ("captcha/host-new-connection", false, 5_000),
    ] {
        let (_dir, host) = captcha_host(&server, pooled).await;
        let (native, hosted) = measure_pair(iterations, native, |i| decide(&host, i)).await;
        if pooled {
            report("captcha/native", &native, None);
        }
        report(line, &hosted, Some(&native));
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let (_dir, host) = host_with_password_policy()
            .await
            .expect("host with the bundled plugins");
        // Sanity: the benchmark measures real decisions, not errors.
        let record = host
            .try_evaluate_password("password-policy", &password("password1234567"))
            .await
            .expect("decision");
        assert_eq!(record.decision.codes(), ["common-password"]);
        // A filter naming one group runs only that group (handy under a profiler).
        if group_selected("password-policy") {
            password_policy_benches(&host).await;
        }
        if group_selected("breach-check") {
            breach_check_benches().await;
        }
        if group_selected("captcha") {
            captcha_benches().await;
        }
    });
    let regressions = REGRESSIONS.lock().expect("regressions");
    if !regressions.is_empty() {
        eprintln!("gross regressions against the README:");
        for regression in regressions.iter() {
            eprintln!("  {regression}");
        }
        std::process::exit(1);
    }
}
