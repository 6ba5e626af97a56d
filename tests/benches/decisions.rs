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

const WARMUP: usize = 500;
const ITERATIONS: usize = 20_000;

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

/// Runs `step` `WARMUP + ITERATIONS` times, timing each measured call. `step` gets a call
/// number unique across warm-up and measurement.
async fn measure<F, Fut>(step: F) -> Summary
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    measure_n(ITERATIONS, step).await
}

/// [`measure`] with a chosen number of measured iterations.
async fn measure_n<F, Fut>(iterations: usize, mut step: F) -> Summary
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..WARMUP {
        step(i).await;
    }
    let mut samples = Vec::with_capacity(iterations);
    let started = Instant::now();
    for i in WARMUP..WARMUP + iterations {
        let before = Instant::now();
        step(i).await;
        samples.push(before.elapsed());
    }
    let total = started.elapsed();
    summarise(samples, total)
}

fn summarise(mut samples: Vec<Duration>, total: Duration) -> Summary {
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
        line["native_median_ns"] = json!(native.median_ns);
        line["ratio"] = json!(
            ((host.median_ns as f64 / native.median_ns.max(1) as f64) * 100.0).round() / 100.0
        );
    }
    println!("{line}");
}

async fn password_policy_benches(host: &PolicyHost) {
    let inputs = inputs();
    let settings = password_policy::settings::PolicySettings::default();
    let native = measure(|i| {
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
    })
    .await;
    report("password-policy/native", &native, None);

    let hosted = measure(|i| {
        let input = &inputs[i % inputs.len()];
        async move {
            let record = host
                .try_evaluate_password("password-policy", input)
                .await
                .expect("decision");
            std::hint::black_box(record);
        }
    })
    .await;
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
        .and_then(|slot| slot.current())
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

/// A range body the size of a real Pwned Passwords answer with `Add-Padding: true`: 900 lines
/// (the real ones have 800–1,000, ~30 KB), sorted, CRLF, 35 hex characters and a count, about
/// a third of them count-0 padding, with the hit (`suffix:count`) wherever sorting puts it.
fn realistic_range_body(suffix: &str, count: u64) -> String {
    const LINES: usize = 900;
    // SplitMix64: the same body every run, without a dependency.
    let mut state = 0x5EED_0018_u64;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let mut entries: Vec<(String, u64)> = (1..LINES)
        .map(|index| {
            let line_suffix = format!("{:016X}{:016X}{:03X}", next(), next(), next() & 0xFFF);
            let line_count = if index % 3 == 0 {
                0
            } else {
                1 + next() % 5_000
            };
            (line_suffix, line_count)
        })
        .collect();
    entries.push((suffix.to_owned(), count));
    entries.sort();
    entries
        .iter()
        .map(|(line_suffix, line_count)| format!("{line_suffix}:{line_count}"))
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// The breach check of a password whose range is already cached by the gateway, against the
/// same work natively: SHA-1, and the lookup in a range body of real size (the test server's
/// range is far smaller, so the hosted line does not yet carry the real body's lookup).
async fn breach_check_benches() {
    let breached = [("password123", 2_254_650u64)];
    let server = hibp::HibpServer::start(&breached).await;
    let (_dir, host) = host_with_breach_check(&server.server.url(), quick_policy(), &[])
        .await
        .expect("breach-check host");
    let password = "password123";
    let first = host.check_breach("breach-check", password).await;
    assert!(
        matches!(first.outcome, policy_host::BreachOutcome::Breached { .. }),
        "{:?}",
        first.outcome
    );

    let (prefix, suffix) = breach_check::hash::prefix_and_suffix(password);
    let body = realistic_range_body(&suffix, breached[0].1);
    assert_eq!(
        breach_check::lookup_in_response(200, body.as_bytes(), &suffix),
        breach_check::Lookup::Count(breached[0].1),
        "the native lookup finds the hit in the realistic body"
    );
    let native = measure(|_| {
        let (_, suffix) = breach_check::hash::prefix_and_suffix(std::hint::black_box(password));
        std::hint::black_box(breach_check::lookup_in_response(
            200,
            body.as_bytes(),
            &suffix,
        ));
        async {}
    })
    .await;
    report("breach-check/native", &native, None);
    let hosted = measure(|_| {
        let host = &host;
        async move {
            std::hint::black_box(host.check_breach("breach-check", password).await);
        }
    })
    .await;
    report("breach-check/host-cached", &hosted, Some(&native));
    assert_eq!(
        server.server.request_count(),
        1,
        "every measured decision was served from the cache"
    );

    let plugin = instantiate_bench(&host, "breach-check").await;
    let engine = host.catalog().engine().clone();

    // The gateway alone, serving the cached range: the host side of the request.
    let egress = plugin
        .egress()
        .expect("a network plugin has egress")
        .clone();
    let url = format!("{}/range/{prefix}", server.server.url());
    let gateway = measure(|_| {
        let (engine, egress, url) = (&engine, &egress, &url);
        async move {
            let request = http::Request::get(url.as_str())
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

/// A CAPTCHA decision against a local Turnstile simulator (its always-pass test secret), each
/// with a fresh token; natively, the same JSON parse and judgement.
async fn captcha_benches() {
    use harness::captcha_vendors::{self as vendors, CaptchaServer, Vendor};
    use policy_host::egress::config::{DestinationConfig, SecretSource};
    let server = CaptchaServer::start(Vendor::Turnstile).await;
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
    let native = measure(|_| {
        let answer: captcha::verdict::SiteverifyAnswer =
            serde_json::from_str(&body).expect("answer");
        std::hint::black_box(captcha::verdict::judge(&answer, "login", &settings, now));
        async {}
    })
    .await;
    report("captcha/native", &native, None);
    // Each decision opens a connection to the provider: fewer iterations keep the ephemeral
    // ports (and TIME_WAIT) in check.
    let hosted = measure_n(5_000, |i| {
        let host = &host;
        async move {
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
    })
    .await;
    report("captcha/host-local-provider", &hosted, Some(&native));
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
}
