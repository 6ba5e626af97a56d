//! The public API holds up (issue 13): throttles under concurrency and across replicas,
//! trusted proxies, canonical email addresses, problem+json from every layer, slow clients,
//! and the OpenAPI document as a contract every response is checked against.

use harness::{
    captcha_vendors::{CaptchaServer, Vendor},
    hibp::HibpServer,
    http::{get_json, post},
    postgres,
    service::{ADMIN_TOKEN, TestService},
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use std::{
    collections::BTreeSet,
    fmt::Write as _,
    sync::Mutex,
    time::{Duration, Instant},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use user_service::store::{DeliveryFailure, DeliveryOutcome};

const GOOD_PASSWORD: &str = "correct horse battery staple";
const WRONG_PASSWORD: &str = "not the password at all";

fn kind(problem: &Value) -> &str {
    problem["type"]
        .as_str()
        .and_then(|kind| kind.strip_prefix("urn:user-service:problem:"))
        .unwrap_or("")
}

async fn register(client: &Client, service: &TestService, email: &str) -> (StatusCode, Value) {
    post(
        client,
        service.url("/v1/users"),
        json!({ "email": email, "password": GOOD_PASSWORD }),
    )
    .await
}

// ---------------------------------------------------------------------------------------------
// Throttles
// ---------------------------------------------------------------------------------------------

/// Two service instances ("replicas") on one fresh PostgreSQL database.
async fn two_replicas(
    hibp: &HibpServer,
    turnstile: Option<&CaptchaServer>,
) -> (TestService, TestService) {
    let url = postgres::fresh_database()
        .await
        .expect("a PostgreSQL server (see tests/src/postgres.rs)");
    let turnstile = turnstile.map(CaptchaServer::url);
    let hibp_url = hibp.server.url();
    let start = || {
        TestService::start(&hibp_url, turnstile.as_deref(), |config| {
            config.database_url = url.clone();
            config.events.relay = false;
        })
    };
    let first = start().await.unwrap();
    let second = start().await.unwrap();
    (first, second)
}

/// Sends `count` wrong logins for `email` at once, alternating between the replicas; returns
/// the problem kinds they got, sorted.
async fn parallel_wrong_logins(
    replicas: [&TestService; 2],
    email: &str,
    count: usize,
) -> Vec<String> {
    let client = Client::new();
    let attempts = (0..count).map(|i| {
        let replica = replicas[i % 2];
        let client = client.clone();
        let email = email.to_owned();
        async move {
            let (_, body) = replica.login(&client, &email, WRONG_PASSWORD).await;
            kind(&body).to_owned()
        }
    });
    let mut kinds = futures_util::future::join_all(attempts).await;
    kinds.sort();
    kinds
}

fn count(kinds: &[String], wanted: &str) -> usize {
    kinds.iter().filter(|kind| *kind == wanted).count()
}

#[tokio::test]
async fn forty_parallel_wrong_logins_at_lock_minus_five_evaluate_five_passwords_on_two_replicas() {
    let _exclusive = harness::exclusive().await;
    let hibp = HibpServer::start(&[]).await;
    let (a, b) = two_replicas(&hibp, None).await;
    let client = Client::new();
    let (status, body) = register(&client, &a, "lock@example.org").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap();
    let lock = i64::from(a.state.config.flows.lock_after_failures);
    for _ in 0..lock - 5 {
        a.state.store.record_failed_login(id).await.unwrap();
    }

    let kinds = parallel_wrong_logins([&a, &b], "lock@example.org", 40).await;
    let evaluated = count(&kinds, "invalid-credentials");
    eprintln!(
        "40 parallel wrong logins at lock - 5: {evaluated} evaluated, {} locked",
        count(&kinds, "account-locked")
    );
    // At most the 5 attempts left (fewer when a refused attempt was still in flight, counted,
    // when another one was decided: refusing is always the safe side).
    assert!((1..=5).contains(&evaluated), "{kinds:?}");
    assert_eq!(count(&kinds, "account-locked"), 40 - evaluated, "{kinds:?}");
    let user = b.state.store.user_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        user.failed_logins,
        lock - 5 + evaluated as i64,
        "refused attempts are taken back"
    );
    // Whatever the interleaving, the attempts left before the lock can still be made.
    while b
        .state
        .store
        .user_by_id(id)
        .await
        .unwrap()
        .unwrap()
        .failed_logins
        < lock
    {
        let (_, body) = a.login(&client, "lock@example.org", WRONG_PASSWORD).await;
        assert_eq!(kind(&body), "invalid-credentials");
    }
    // Locked, even with the right password, on either replica.
    for replica in [&a, &b] {
        let (status, body) = replica
            .login(&client, "lock@example.org", GOOD_PASSWORD)
            .await;
        assert_eq!(
            (status, kind(&body)),
            (StatusCode::TOO_MANY_REQUESTS, "account-locked")
        );
    }
}

#[tokio::test]
async fn thirty_parallel_wrong_logins_on_a_fresh_account_need_a_captcha_from_the_fourth_on_two_replicas()
 {
    let _exclusive = harness::exclusive().await;
    let hibp = HibpServer::start(&[]).await;
    let turnstile = CaptchaServer::start(Vendor::Turnstile).await;
    let (a, b) = two_replicas(&hibp, Some(&turnstile)).await;
    let client = Client::new();
    let (status, body) = register(&client, &a, "fresh@example.org").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let kinds = parallel_wrong_logins([&a, &b], "fresh@example.org", 30).await;
    eprintln!(
        "30 parallel wrong logins on a fresh account: {} evaluated, {} asked for a CAPTCHA",
        count(&kinds, "invalid-credentials"),
        count(&kinds, "captcha-required")
    );
    // At most 3 passwords checked without a CAPTCHA (fewer when an attempt refused by one
    // count was still counted in the other when another attempt was decided); every other
    // attempt asked for one.
    let evaluated = count(&kinds, "invalid-credentials");
    assert!((1..=3).contains(&evaluated), "{kinds:?}");
    assert_eq!(
        count(&kinds, "captcha-required"),
        30 - evaluated,
        "{kinds:?}"
    );
    let user = a
        .state
        .store
        .user_by_email("fresh@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        user.failed_logins, evaluated as i64,
        "only evaluated attempts stay counted"
    );
    // With a CAPTCHA the right password still works, and clears the count.
    let (status, body) = post(
        &client,
        b.url("/v1/sessions"),
        json!({ "email": "fresh@example.org", "password": GOOD_PASSWORD, "captcha_token": "widget-token" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let user = a.state.store.user_by_id(&user.id).await.unwrap().unwrap();
    assert_eq!(user.failed_logins, 0);
}

#[tokio::test]
async fn the_per_client_count_is_shared_by_replicas() {
    let hibp = HibpServer::start(&[]).await;
    let turnstile = CaptchaServer::start(Vendor::Turnstile).await;
    let (a, b) = two_replicas(&hibp, Some(&turnstile)).await;
    let client = Client::new();
    // Unknown accounts: only the client's count can ask for a CAPTCHA.
    let mut kinds = Vec::new();
    for i in 0..6 {
        let replica = if i % 2 == 0 { &a } else { &b };
        let (_, body) = replica
            .login(&client, &format!("nobody{i}@example.org"), WRONG_PASSWORD)
            .await;
        kinds.push(kind(&body).to_owned());
    }
    assert_eq!(
        kinds,
        [
            "invalid-credentials",
            "invalid-credentials",
            "invalid-credentials",
            "captcha-required",
            "captcha-required",
            "captcha-required"
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Trusted proxies
// ---------------------------------------------------------------------------------------------

/// Wrong logins for different unknown accounts, each with its own `X-Forwarded-For`; returns
/// the problem kinds.
async fn rotating_forwarded_for(service: &TestService, rounds: usize, same: bool) -> Vec<String> {
    let client = Client::new();
    let mut kinds = Vec::new();
    for i in 0..rounds {
        let forwarded = if same {
            "198.51.100.1".to_owned()
        } else {
            format!("198.51.100.{}", i + 1)
        };
        let response = client
            .post(service.url("/v1/sessions"))
            .header("x-forwarded-for", forwarded)
            .json(&json!({ "email": format!("ghost{i}@example.org"), "password": WRONG_PASSWORD }))
            .send()
            .await
            .unwrap();
        kinds.push(kind(&response.json::<Value>().await.unwrap()).to_owned());
    }
    kinds
}

#[tokio::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let hibp = HibpServer::start(&[]).await;
    let turnstile = CaptchaServer::start(Vendor::Turnstile).await;
    let untrusted = TestService::start(&hibp.server.url(), Some(&turnstile.url()), |_| {})
        .await
        .unwrap();
    // A spoofed header from an untrusted peer changes nothing: the peer is counted.
    let kinds = rotating_forwarded_for(&untrusted, 5, false).await;
    assert_eq!(
        kinds[3..],
        ["captcha-required", "captcha-required"],
        "{kinds:?}"
    );

    let proxied = TestService::start(&hibp.server.url(), Some(&turnstile.url()), |config| {
        config.http = toml::from_str("trusted-proxies = [\"127.0.0.1/32\", \"::1/128\"]").unwrap();
    })
    .await
    .unwrap();
    // From a trusted proxy, each forwarded client is counted on its own...
    let kinds = rotating_forwarded_for(&proxied, 5, false).await;
    assert!(
        kinds.iter().all(|kind| kind == "invalid-credentials"),
        "{kinds:?}"
    );
    // ...and one client behind it is throttled whatever the proxy's address.
    let kinds = rotating_forwarded_for(&proxied, 5, true).await;
    assert_eq!(
        kinds[3..],
        ["captcha-required", "captcha-required"],
        "{kinds:?}"
    );
    // Its events name the forwarded client.
    let client = Client::new();
    let response = client
        .post(proxied.url("/v1/users"))
        .header("x-forwarded-for", "203.0.113.50, 127.0.0.1")
        .json(&json!({ "email": "proxied@example.org", "password": GOOD_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let events = proxied.delivered_events().await;
    assert_eq!(events[0]["data"]["request"]["clientIp"], "203.0.113.50");
}

// ---------------------------------------------------------------------------------------------
// Canonical email
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn one_account_per_mailbox_however_it_is_typed() {
    let hibp = HibpServer::start(&[]).await;
    let service = TestService::start(&hibp.server.url(), None, |_| {})
        .await
        .unwrap();
    let client = Client::new();
    for (first, second) in [
        ("jos\u{e9}@b\u{fc}cher.de", "jose\u{301}@bu\u{308}cher.de"),
        ("ana@b\u{fc}cher.de", "ana@xn--bcher-kva.de"),
        (
            "Zo\u{eb}@M\u{fc}nchen.example",
            "zo\u{eb}@xn--mnchen-3ya.EXAMPLE",
        ),
        ("\u{e5}sa@example.org", "a\u{30a}sa@EXAMPLE.org"),
    ] {
        let (status, body) = register(&client, &service, first).await;
        assert_eq!(status, StatusCode::CREATED, "{first:?}: {body}");
        assert_eq!(body["email_display"], first);
        let (status, body) = register(&client, &service, second).await;
        assert_eq!(
            (status, kind(&body)),
            (StatusCode::CONFLICT, "email-taken"),
            "{second:?}"
        );
        // Either form logs in.
        let (status, _) = service.login(&client, second, GOOD_PASSWORD).await;
        assert_eq!(status, StatusCode::OK, "{second:?}");
    }
    let (_, body) = register(&client, &service, "jos\u{e9}@b\u{fc}cher.de").await;
    assert_eq!(kind(&body), "email-taken");
    for refused in [
        "evil\u{202e}gro.elpmaxe@example.org",
        "a@[127.0.0.1]",
        "a@127.0.0.1",
        "a@localhost",
        "zw\u{200b}j@example.org",
    ] {
        let (status, body) = register(&client, &service, refused).await;
        assert_eq!(
            (status, kind(&body)),
            (StatusCode::BAD_REQUEST, "invalid-email"),
            "{refused:?}"
        );
    }
}

#[tokio::test]
async fn addresses_stored_before_canonical_forms_are_migrated() {
    use sqlx::Connection;
    let url = postgres::fresh_database()
        .await
        .expect("a PostgreSQL server");
    let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
    // The schema and rows as the previous version wrote them (lower-cased, nothing else).
    sqlx::query(
        "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, display_name TEXT,
         password_hash TEXT NOT NULL, created_at BIGINT NOT NULL, failed_logins BIGINT NOT NULL DEFAULT 0,
         reset_required BIGINT NOT NULL DEFAULT 0)",
    )
    .execute(&mut connection)
    .await
    .unwrap();
    for (id, email, created_at) in [
        ("old-nfc", "jos\u{e9}@b\u{fc}cher.de", 1_i64),
        ("old-nfd", "jose\u{301}@bu\u{308}cher.de", 2),
        ("old-plain", "ann@example.org", 3),
        ("old-bidi", "a\u{202e}b@example.org", 4),
    ] {
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, 'x', $3)",
        )
        .bind(id)
        .bind(email)
        .bind(created_at)
        .execute(&mut connection)
        .await
        .unwrap();
    }
    let store = user_service::store::Store::connect(&url).await.unwrap();
    let nfc = store.user_by_id("old-nfc").await.unwrap().unwrap();
    assert_eq!(nfc.email, "jos\u{e9}@xn--bcher-kva.de");
    assert_eq!(nfc.email_display, "jos\u{e9}@b\u{fc}cher.de");
    // The younger duplicate keeps its old value (an operator merges the two).
    let nfd = store.user_by_id("old-nfd").await.unwrap().unwrap();
    assert_eq!(nfd.email, "jose\u{301}@bu\u{308}cher.de");
    assert_eq!(
        store.user_by_id("old-plain").await.unwrap().unwrap().email,
        "ann@example.org"
    );
    assert_eq!(
        store.user_by_id("old-bidi").await.unwrap().unwrap().email,
        "a\u{202e}b@example.org",
        "refused addresses are left as they are"
    );
    // Idempotent.
    drop(store);
    let store = user_service::store::Store::connect(&url).await.unwrap();
    assert_eq!(
        store
            .user_by_email("jos\u{e9}@xn--bcher-kva.de")
            .await
            .unwrap()
            .unwrap()
            .id,
        "old-nfc"
    );
}

// ---------------------------------------------------------------------------------------------
// problem+json from every layer, raw HTTP
// ---------------------------------------------------------------------------------------------

/// Sends `request` as is on a new connection and reads until the server closes or `timeout`;
/// returns what came back.
async fn raw(service: &TestService, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(service.address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// `method path` with `host: x` and the extra header lines `headers`, sent raw (see [`raw`]).
async fn raw_request(service: &TestService, method: &str, path: &str, headers: &str) -> String {
    raw(
        service,
        format!("{method} {path} HTTP/1.1\r\nhost: x\r\n{headers}\r\n").as_bytes(),
    )
    .await
}

/// `count` distinct filler header lines.
fn filler_headers(count: usize) -> String {
    (0..count).fold(String::new(), |mut headers, i| {
        let _ = write!(headers, "x-filler-{i}: {i}\r\n");
        headers
    })
}

/// Splits a raw response into status, lower-cased head, body.
fn parse(answer: &str) -> (u16, String, String) {
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or(0);
    (status, head.to_lowercase(), body.to_owned())
}

fn assert_problem(answer: &str, status: u16, expected_kind: &str) -> String {
    let (got, head, body) = parse(answer);
    assert_eq!(got, status, "{answer}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{answer}"
    );
    let problem: Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("a JSON body: {answer}"));
    assert_eq!(kind(&problem), expected_kind, "{answer}");
    assert_eq!(problem["status"], status);
    head
}

#[tokio::test]
async fn every_layer_answers_problem_json() {
    let hibp = HibpServer::start(&[]).await;
    let service = TestService::start(&hibp.server.url(), None, |_| {})
        .await
        .unwrap();
    let close = "connection: close\r\n";

    let answer = raw_request(&service, "GET", "/nowhere", close).await;
    assert_problem(&answer, 404, "not-found");
    let answer = raw_request(&service, "GET", "/v1/users", close).await;
    let head = assert_problem(&answer, 405, "method-not-allowed");
    assert!(head.contains("allow: post"), "{answer}");
    let answer = raw_request(&service, "DELETE", "/healthz", close).await;
    let head = assert_problem(&answer, 405, "method-not-allowed");
    assert!(head.contains("allow: get,head"), "{answer}");
    let body = "x".repeat(100_000);
    let answer = raw(&service, format!("POST /v1/users HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{close}\r\n{body}", body.len()).as_bytes()).await;
    assert_problem(&answer, 413, "body-too-large");
    let answer = raw(&service, format!("POST /v1/users HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n{close}\r\nhi").as_bytes()).await;
    assert_problem(&answer, 415, "unsupported-media-type");
    // A path parameter axum cannot decode (invalid UTF-8): axum's own rejection, made a problem.
    let answer = raw(&service, format!("POST /admin/plugins/%FF/reload HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_TOKEN}\r\ncontent-length: 0\r\n{close}\r\n").as_bytes()).await;
    assert_problem(&answer, 400, "bad-request");
    // Too many headers (over max-headers, 64) and too large ones (over max-header-bytes, 16 KiB).
    let many = filler_headers(80);
    let answer = raw_request(&service, "GET", "/healthz", &format!("{many}{close}")).await;
    assert_problem(&answer, 431, "headers-too-large");
    let large = format!("x-large: {}\r\n", "a".repeat(20_000));
    let answer = raw_request(&service, "GET", "/healthz", &format!("{large}{close}")).await;
    assert_problem(&answer, 431, "headers-too-large");

    // Beyond four times the limits, and for a request line hyper cannot parse, hyper answers
    // itself before any service code runs: a plain, body-less response, then it closes.
    let huge = filler_headers(300);
    let answer = raw_request(&service, "GET", "/healthz", &huge).await;
    let (status, head, body) = parse(&answer);
    assert_eq!((status, body.as_str()), (431, ""), "{answer}");
    assert!(!head.contains("content-type"), "{answer}");
    let answer = raw(&service, b"GET /healthz HTTP/1.1 extra\r\nhost: x\r\n\r\n").await;
    let (status, _, body) = parse(&answer);
    assert_eq!((status, body.as_str()), (400, ""), "{answer}");
}

// ---------------------------------------------------------------------------------------------
// Slow clients
// ---------------------------------------------------------------------------------------------

/// Opens a connection and sends `GET /healthz` on it; the open connection and the start of
/// the answer.
async fn healthz_on_new_connection(service: &TestService) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(service.address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buffer = vec![0u8; 4096];
    let read = stream.read(&mut buffer).await.unwrap();
    let answer = String::from_utf8_lossy(&buffer[..read]).into_owned();
    (stream, answer)
}

/// Trickles a request head one byte every `every`; returns how long until the server closed
/// the connection (or `None` if it was still open after `give_up`).
async fn slow_header_client(
    service: &TestService,
    every: Duration,
    give_up: Duration,
) -> Option<Duration> {
    let mut stream = TcpStream::connect(service.address).await.unwrap();
    let started = Instant::now();
    let head = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: "
        .iter()
        .chain(std::iter::repeat(&b'a'));
    for byte in head {
        if started.elapsed() > give_up {
            return None;
        }
        if stream.write_all(&[*byte]).await.is_err() {
            return Some(started.elapsed());
        }
        let mut buffer = [0u8; 256];
        match tokio::time::timeout(every, stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => panic!("the server answered a request it never fully received"),
            Err(_) => {}
        }
    }
    None
}

#[tokio::test]
async fn slow_clients_are_disconnected_while_others_are_served() {
    let hibp = HibpServer::start(&[]).await;
    let service = TestService::start(&hibp.server.url(), None, |config| {
        config.http.header_read_timeout_ms = 1_000;
        config.http.keep_alive_timeout_ms = 1_500;
    })
    .await
    .unwrap();
    let slow = (0..8).map(|_| {
        slow_header_client(
            &service,
            Duration::from_millis(200),
            Duration::from_secs(10),
        )
    });
    let normal = async {
        let client = Client::new();
        let mut served = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_millis(1_500) {
            let response = client.get(service.url("/healthz")).send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            served += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        served
    };
    let (closed, served) = tokio::join!(futures_util::future::join_all(slow), normal);
    eprintln!(
        "slow-header clients closed after {closed:?}; {served} normal requests served meanwhile"
    );
    assert!(served > 10);
    for after in closed {
        let after = after.expect("the slow client was disconnected");
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(2),
            "{after:?}"
        );
    }

    // An idle kept-alive connection is closed after keep-alive-timeout-ms.
    let (mut stream, answer) = healthz_on_new_connection(&service).await;
    assert!(answer.starts_with("HTTP/1.1 200"));
    let mut buffer = vec![0u8; 4096];
    let idle = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await;
    assert!(
        matches!(closed, Ok(Ok(0) | Err(_))),
        "closed, not timed out"
    );
    let after = idle.elapsed();
    eprintln!("idle keep-alive connection closed after {after:?}");
    assert!(
        after >= Duration::from_millis(1_400) && after < Duration::from_millis(2_500),
        "{after:?}"
    );
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_one() {
    let hibp = HibpServer::start(&[]).await;
    let service = TestService::start(&hibp.server.url(), None, |config| {
        config.http.max_connections = 2;
    })
    .await
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..2 {
        let (stream, answer) = healthz_on_new_connection(&service).await;
        assert!(answer.starts_with("HTTP/1.1 200"));
        held.push(stream);
    }
    let client = Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let waiting = tokio::time::timeout(
        Duration::from_millis(500),
        client.get(service.url("/healthz")).send(),
    )
    .await;
    assert!(
        waiting.is_err(),
        "a third connection is not served while two are open"
    );
    drop(held);
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        client.get(service.url("/healthz")).send(),
    )
    .await
    .expect("served once a connection closed")
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------------
// The OpenAPI document as a contract
// ---------------------------------------------------------------------------------------------

/// Validates responses against the served document and records which operations and statuses
/// were seen.
struct Contract {
    document: Value,
    seen: Mutex<BTreeSet<(String, String, u16)>>,
}

impl Contract {
    async fn load(client: &Client, service: &TestService) -> Self {
        let document = get_json(client, service.url("/openapi.json")).await;
        Self {
            document,
            seen: Mutex::new(BTreeSet::new()),
        }
    }

    /// A schema from the document, standing alone (its `#/components/...` references resolve).
    fn schema(&self, schema: &Value) -> jsonschema::Validator {
        let mut standalone = schema.clone();
        if let Value::Object(map) = &mut standalone {
            map.insert(
                "$schema".into(),
                json!("https://json-schema.org/draft/2020-12/schema"),
            );
            map.insert("components".into(), self.document["components"].clone());
        } else {
            standalone = json!({ "$schema": "https://json-schema.org/draft/2020-12/schema", "components": self.document["components"], "allOf": [schema] });
        }
        jsonschema::validator_for(&standalone).expect("a valid JSON Schema")
    }

    /// The documented response for `status` of `method path` (a path template), or, for paths
    /// and methods the document does not list, its shared 404 and 405 responses.
    fn documented(&self, method: &Method, path: &str, status: u16) -> Value {
        let operation = &self.document["paths"][path][method.as_str().to_lowercase()];
        if operation.is_object() {
            let response = &operation["responses"][status.to_string()];
            assert!(
                response.is_object(),
                "{method} {path} answered {status}, which the document does not list"
            );
            return response.clone();
        }
        let shared = match status {
            404 => "NotFound",
            405 => "MethodNotAllowed",
            _ => panic!("{method} {path} is not in the document and answered {status}"),
        };
        self.document["components"]["responses"][shared].clone()
    }

    /// Checks one response against the document; returns status and body.
    async fn check(
        &self,
        method: Method,
        path: &str,
        response: reqwest::Response,
    ) -> (StatusCode, Value) {
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .map(|value| value.split(';').next().unwrap_or("").trim().to_owned());
        let text = response.text().await.unwrap();
        let documented = self.documented(&method, path, status.as_u16());
        self.seen
            .lock()
            .unwrap()
            .insert((method.to_string(), path.to_owned(), status.as_u16()));
        let Some(content) = documented.get("content") else {
            assert!(
                text.is_empty(),
                "{method} {path} {status}: documented without a body, got {text}"
            );
            return (status, Value::Null);
        };
        let content_type =
            content_type.unwrap_or_else(|| panic!("{method} {path} {status}: no content-type"));
        let schema = &content[&content_type]["schema"];
        assert!(
            schema.is_object(),
            "{method} {path} {status}: `{content_type}` is not documented ({documented})"
        );
        let body = if content_type == "text/plain" {
            Value::String(text.clone())
        } else {
            serde_json::from_str(&text)
                .unwrap_or_else(|_| panic!("{method} {path} {status}: not JSON: {text}"))
        };
        let validator = self.schema(schema);
        let errors: Vec<String> = validator
            .iter_errors(&body)
            .map(|error| format!("{error} at {}", error.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} {status}: {errors:?}\n{body}"
        );
        (status, body)
    }

    /// Whether `body` is valid for the request schema of `POST path`.
    fn request_valid(&self, path: &str, body: &Value) -> bool {
        let schema = &self.document["paths"][path]["post"]["requestBody"]["content"]["application/json"]
            ["schema"];
        self.schema(schema).is_valid(body)
    }
}

#[tokio::test]
async fn every_response_matches_the_served_openapi_document() {
    let hibp = HibpServer::start(&[("hunter2hunter2hunter2", 42)]).await;
    let turnstile = CaptchaServer::start(Vendor::Turnstile).await;
    let service = TestService::start(&hibp.server.url(), Some(&turnstile.url()), |config| {
        config.flows.lock_after_failures = 5;
        // Events stay in the outbox, where the test reads them and makes a dead letter.
        config.events.relay = false;
    })
    .await
    .unwrap();
    let client = Client::new();
    let contract = Contract::load(&client, &service).await;
    let send = |method: Method, path: String, body: Option<Value>, admin: bool| {
        let mut request = client.request(method, service.url(&path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if admin {
            request = request.bearer_auth(ADMIN_TOKEN);
        }
        request.send()
    };
    macro_rules! call {
        (POST $template:literal, $body:expr) => {
            call!(POST $template $template, Some($body), false)
        };
        (GET $template:literal) => {
            call!(GET $template $template, None, false)
        };
        ($method:ident $template:literal $path:expr, $body:expr, $admin:expr) => {
            contract
                .check(Method::$method, $template, send(Method::$method, $path.to_string(), $body, $admin).await.unwrap())
                .await
        };
    }

    // Probes, metrics, the document.
    call!(GET "/healthz");
    call!(GET "/readyz");
    call!(GET "/metrics");
    call!(GET "/openapi.json");

    // The dry run.
    call!(POST "/v1/password/check", json!({ "password": GOOD_PASSWORD }));
    let (_, report) = call!(POST "/v1/password/check", json!({ "password": "hunter2hunter2hunter2", "email": null, "has_mfa": true }));
    assert_eq!(report["breach"]["outcome"], "breached");

    // Registration.
    let email = "contract@example.org";
    call!(POST "/v1/users", json!({ "email": email, "password": GOOD_PASSWORD, "display_name": "Con Tract" }));
    call!(POST "/v1/users", json!({ "email": email, "password": GOOD_PASSWORD }));
    call!(POST "/v1/users", json!({ "email": "weak@example.org", "password": "password" }));
    call!(POST "/v1/users", json!({ "email": "a\u{202e}b@example.org", "password": GOOD_PASSWORD }));
    call!(POST "/v1/users", json!({ "email": "long@example.org", "password": GOOD_PASSWORD, "display_name": "n".repeat(201) }));

    // Login: success, failures, CAPTCHA, replayed CAPTCHA.
    call!(POST "/v1/sessions", json!({ "email": email, "password": GOOD_PASSWORD }));
    call!(POST "/v1/sessions", json!({ "email": "[bad", "password": GOOD_PASSWORD }));
    for _ in 0..3 {
        call!(POST "/v1/sessions", json!({ "email": email, "password": WRONG_PASSWORD }));
    }
    let (_, problem) =
        call!(POST "/v1/sessions", json!({ "email": email, "password": GOOD_PASSWORD }));
    assert_eq!(kind(&problem), "captcha-required");
    let (_, problem) = call!(POST "/v1/sessions", json!({ "email": email, "password": WRONG_PASSWORD, "captcha_token": "login-1" }));
    assert_eq!(kind(&problem), "invalid-credentials");
    let (status, _) = call!(POST "/v1/sessions", json!({ "email": email, "password": GOOD_PASSWORD, "captcha_token": "login-1" }));
    assert_eq!(status, StatusCode::FORBIDDEN, "a replayed CAPTCHA token");
    let (status, _) = call!(POST "/v1/sessions", json!({ "email": email, "password": GOOD_PASSWORD, "captcha_token": "login-2" }));
    assert_eq!(status, StatusCode::OK);

    // Change: success, weak new password.
    let changed = "the second passphrase of the year";
    call!(POST "/v1/password/change", json!({ "email": email, "current_password": GOOD_PASSWORD, "new_password": changed, "captcha_token": "change-1" }));
    call!(POST "/v1/password/change", json!({ "email": email, "current_password": changed, "new_password": "short", "captcha_token": "change-2" }));

    // Reset: request, complete, reuse, weak.
    call!(POST "/v1/password/reset-requests", json!({ "email": email }));
    call!(POST "/v1/password/reset-requests", json!({ "email": "" }));
    let events = service.state.store.pending_events().await.unwrap();
    let token = events
        .iter()
        .find(|event| event.event_type == "PasswordResetRequestedEventV1")
        .and_then(|event| event.payload["data"]["resetToken"].as_str())
        .unwrap()
        .to_owned();
    call!(POST "/v1/password/resets", json!({ "token": token, "new_password": "short" }));
    call!(POST "/v1/password/resets", json!({ "token": token, "new_password": "a brand new passphrase for spring" }));
    call!(POST "/v1/password/resets", json!({ "token": token, "new_password": "a brand new passphrase for summer" }));

    // Lock the account; then change answers 429 too.
    for i in 0..5 {
        call!(POST "/v1/sessions", json!({ "email": email, "password": WRONG_PASSWORD, "captcha_token": format!("lock-{i}") }));
    }
    let (status, _) = call!(POST "/v1/sessions", json!({ "email": email, "password": WRONG_PASSWORD, "captcha_token": "lock-final" }));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    call!(POST "/v1/password/change", json!({ "email": email, "current_password": WRONG_PASSWORD, "new_password": changed, "captcha_token": "lock-change" }));
    call!(POST "/v1/password/change", json!({ "email": "other@example.org", "current_password": WRONG_PASSWORD, "new_password": changed, "captcha_token": "other-change" }));

    // Admin.
    call!(GET "/admin/plugins" "/admin/plugins", None, false);
    call!(GET "/admin/plugins" "/admin/plugins", None, true);
    call!(POST "/admin/plugins/{name}/reload" "/admin/plugins/password-policy/reload", None, true);
    call!(POST "/admin/plugins/{name}/reload" "/admin/plugins/nope/reload", None, true);
    call!(POST "/admin/plugins/{name}/reload" "/admin/plugins/nope/reload", None, false);
    call!(POST "/admin/plugins/{name}/rollback" "/admin/plugins/password-policy/rollback", None, true);
    call!(POST "/admin/plugins/{name}/rollback" "/admin/plugins/nope/rollback", None, true);
    service.publish_next_password_policy().unwrap();
    call!(POST "/admin/plugins/{name}/reload" "/admin/plugins/password-policy/reload", None, true);
    call!(POST "/admin/plugins/{name}/rollback" "/admin/plugins/password-policy/rollback", None, true);
    service
        .plugins
        .publish_bytes("password-policy", b"not a component")
        .unwrap();
    call!(POST "/admin/plugins/{name}/reload" "/admin/plugins/password-policy/reload", None, true);
    call!(POST "/admin/plugins/{name}/source" "/admin/plugins/password-policy/source", Some(json!({ "source": "file" })), true);
    call!(POST "/admin/plugins/{name}/source" "/admin/plugins/password-policy/source", Some(json!({ "source": "file" })), false);
    call!(POST "/admin/plugins/{name}/source" "/admin/plugins/nope/source", Some(json!({ "source": "file" })), true);
    call!(POST "/admin/plugins/{name}/source" "/admin/plugins/password-policy/source", Some(json!({ "src": 1 })), true);
    // Rollout: desired state, stages, fleet.
    let bundled = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(harness::password_policy_component()).unwrap())
    };
    let desired = "/admin/plugins/password-policy/desired";
    let (status, staged) = call!(PUT "/admin/plugins/{name}/desired" desired, Some(json!({ "component": bundled, "stage": "shadow" })), true);
    assert_eq!(status, StatusCode::ACCEPTED, "{staged}");
    let digest = staged["candidate_digest"].as_str().unwrap().to_owned();
    call!(PUT "/admin/plugins/{name}/desired" desired, Some(json!({ "digest": format!("sha256:{}", "0".repeat(64)) })), true);
    call!(PUT "/admin/plugins/{name}/desired" desired, Some(json!({ "stage": "serving" })), true);
    call!(PUT "/admin/plugins/{name}/desired" desired, Some(json!({ "digest": digest, "stage": "canary" })), true);
    call!(PUT "/admin/plugins/{name}/desired" "/admin/plugins/nope/desired", Some(json!({ "digest": digest })), true);
    call!(GET "/admin/plugins/{name}/rollout" "/admin/plugins/password-policy/rollout", None, true);
    call!(GET "/admin/plugins/{name}/rollout" "/admin/plugins/nope/rollout", None, true);
    call!(POST "/admin/plugins/{name}/promote" "/admin/plugins/password-policy/promote", None, true);
    call!(POST "/admin/plugins/{name}/promote" "/admin/plugins/password-policy/promote", None, true);
    call!(POST "/admin/plugins/{name}/abort" "/admin/plugins/password-policy/abort", None, true);
    call!(PUT "/admin/plugins/{name}/desired" desired, Some(json!({ "digest": digest, "stage": "canary", "percent": 10 })), true);
    call!(POST "/admin/plugins/{name}/abort" "/admin/plugins/password-policy/abort", None, true);
    call!(GET "/admin/plugins/fleet" "/admin/plugins/fleet", None, true);
    call!(GET "/admin/plugins/fleet" "/admin/plugins/fleet", None, false);
    call!(GET "/admin/outbox" "/admin/outbox", None, true);
    call!(GET "/admin/outbox" "/admin/outbox", None, false);
    call!(GET "/admin/outbox/dead-letters" "/admin/outbox/dead-letters", None, true);
    call!(GET "/admin/outbox/dead-letters" "/admin/outbox/dead-letters", None, false);
    call!(POST "/admin/outbox/dead-letters/replay" "/admin/outbox/dead-letters/replay", None, true);
    call!(POST "/admin/outbox/dead-letters/replay" "/admin/outbox/dead-letters/replay", None, false);
    call!(POST "/admin/outbox/dead-letters/{id}/replay" "/admin/outbox/dead-letters/nope/replay", None, true);
    let dead = events[0].id.clone();
    service
        .state
        .store
        .record_deliveries(&[DeliveryOutcome::Failed(DeliveryFailure {
            id: dead.clone(),
            attempts: 1,
            next_attempt_at: 0,
            error: "made dead by the test".to_owned(),
            sinks_done: Vec::new(),
            dead: true,
        })])
        .await
        .unwrap();
    call!(GET "/admin/outbox/dead-letters" "/admin/outbox/dead-letters", None, true);
    call!(POST "/admin/outbox/dead-letters/{id}/replay" format!("/admin/outbox/dead-letters/{dead}/replay"), None, true);
    call!(POST "/admin/outbox/dead-letters/{id}/replay" "/admin/outbox/dead-letters/nope/replay", None, false);
    call!(GET "/admin/security-policies" "/admin/security-policies", None, true);
    call!(GET "/admin/security-policies" "/admin/security-policies", None, false);

    // Sessions, email verification, the account endpoints. Every call that proves a password
    // carries a fresh CAPTCHA token: the client's failures above may require one.
    let send_as = |method: Method, path: String, body: Option<Value>, token: Option<String>| {
        let mut request = client.request(method, service.url(&path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    macro_rules! as_user {
        ($method:ident $template:literal $path:expr, $body:expr, $token:expr) => {
            contract
                .check(
                    Method::$method,
                    $template,
                    send_as(Method::$method, $path.to_string(), $body, $token)
                        .await
                        .unwrap(),
                )
                .await
        };
    }
    let person = "sessions@example.org";
    let (_, registered) =
        call!(POST "/v1/users", json!({ "email": person, "password": GOOD_PASSWORD }));
    let user_id = registered["id"].as_str().unwrap().to_owned();
    let verification = service
        .state
        .store
        .pending_events()
        .await
        .unwrap()
        .iter()
        .rev()
        .find(|event| {
            event.event_type == "EmailVerificationRequestedEventV1"
                && event.payload["data"]["email"] == person
        })
        .and_then(|event| event.payload["data"]["verificationToken"].as_str())
        .unwrap()
        .to_owned();
    let (status, _) = call!(POST "/v1/email/verifications", json!({ "token": verification }));
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call!(POST "/v1/email/verifications", json!({ "token": verification }));
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a verification token works once"
    );
    call!(POST "/v1/email/verification-requests", json!({ "email": person }));
    call!(POST "/v1/email/verification-requests", json!({ "email": "[bad" }));
    let login = |captcha: &str| json!({ "email": person, "password": GOOD_PASSWORD, "captcha_token": captcha });
    let (status, session) = call!(POST "/v1/sessions", login("s-login-1"));
    assert_eq!(status, StatusCode::OK, "{session}");
    let token = session["session_token"].as_str().unwrap().to_owned();
    let me = Some(token.clone());
    as_user!(GET "/v1/sessions/current" "/v1/sessions/current", None, me.clone());
    as_user!(GET "/v1/sessions/current" "/v1/sessions/current", None, None);
    as_user!(GET "/v1/users/me" "/v1/users/me", None, me.clone());
    as_user!(GET "/v1/users/me" "/v1/users/me", None, Some("garbage".to_owned()));
    as_user!(GET "/v1/users/{id}" format!("/v1/users/{user_id}"), None, me.clone());
    as_user!(GET "/v1/users/{id}" format!("/v1/users/{user_id}"), None, Some(ADMIN_TOKEN.to_owned()));
    as_user!(GET "/v1/users/{id}" "/v1/users/0123456789abcdef0123456789abcdef", None, me.clone());
    as_user!(GET "/v1/users/{id}" format!("/v1/users/{user_id}"), None, None);
    as_user!(GET "/v1/sessions" "/v1/sessions", None, me.clone());
    as_user!(GET "/v1/sessions" "/v1/sessions", None, None);
    as_user!(PATCH "/v1/users/me" "/v1/users/me", Some(json!({ "display_name": "Ses Sion" })), me.clone());
    as_user!(PATCH "/v1/users/me" "/v1/users/me", Some(json!({ "display_name": "n".repeat(201) })), me.clone());
    as_user!(PATCH "/v1/users/me" "/v1/users/me", Some(json!({ "email": "moved@example.org", "current_password": WRONG_PASSWORD, "captcha_token": "s-patch-1" })), me.clone());
    as_user!(PATCH "/v1/users/me" "/v1/users/me", Some(json!({ "email": email, "current_password": GOOD_PASSWORD, "captcha_token": "s-patch-2" })), me.clone());
    let (status, moved) = as_user!(PATCH "/v1/users/me" "/v1/users/me", Some(json!({ "email": "moved@example.org", "current_password": GOOD_PASSWORD, "captcha_token": "s-patch-3" })), me.clone());
    assert_eq!(
        (status, &moved["pending_email"]),
        (StatusCode::OK, &json!("moved@example.org"))
    );
    as_user!(PATCH "/v1/users/me" "/v1/users/me", Some(json!({ "display_name": "x" })), None);
    let changed_again = "the sessions passphrase of the year";
    let (status, _) = as_user!(POST "/v1/password/change" "/v1/password/change", Some(json!({ "current_password": GOOD_PASSWORD, "new_password": changed_again, "captcha_token": "s-change-1" })), me.clone());
    assert_eq!(status, StatusCode::NO_CONTENT);
    as_user!(POST "/v1/password/change" "/v1/password/change", Some(json!({ "current_password": GOOD_PASSWORD, "new_password": changed_again })), Some("A".repeat(43)));
    let login = |captcha: &str| json!({ "email": person, "password": changed_again, "captcha_token": captcha });
    let (_, second) = call!(POST "/v1/sessions", login("s-login-2"));
    let second = Some(second["session_token"].as_str().unwrap().to_owned());
    as_user!(DELETE "/v1/sessions" "/v1/sessions", None, me.clone());
    as_user!(DELETE "/v1/sessions" "/v1/sessions", None, None);
    let (status, _) =
        as_user!(GET "/v1/sessions/current" "/v1/sessions/current", None, second.clone());
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "revoked by the other session"
    );
    as_user!(DELETE "/v1/sessions/current" "/v1/sessions/current", None, me.clone());
    as_user!(DELETE "/v1/sessions/current" "/v1/sessions/current", None, me.clone());
    let (_, third) = call!(POST "/v1/sessions", login("s-login-3"));
    let third = Some(third["session_token"].as_str().unwrap().to_owned());
    call!(DELETE "/admin/users/{id}/sessions" format!("/admin/users/{user_id}/sessions"), None, true);
    call!(DELETE "/admin/users/{id}/sessions" "/admin/users/nope/sessions", None, true);
    call!(DELETE "/admin/users/{id}/sessions" format!("/admin/users/{user_id}/sessions"), None, false);
    as_user!(DELETE "/v1/users/me" "/v1/users/me", Some(json!({ "current_password": changed_again })), third);
    let (_, fourth) = call!(POST "/v1/sessions", login("s-login-4"));
    let fourth = Some(fourth["session_token"].as_str().unwrap().to_owned());
    as_user!(DELETE "/v1/users/me" "/v1/users/me", Some(json!({ "current_password": WRONG_PASSWORD, "captcha_token": "s-delete-1" })), fourth.clone());
    let (status, _) = as_user!(DELETE "/v1/users/me" "/v1/users/me", Some(json!({ "current_password": changed_again, "captcha_token": "s-delete-2" })), fourth.clone());
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Outside the document: unknown paths, other methods.
    call!(GET "/nowhere" "/nowhere", None, false);
    call!(GET "/v1/users" "/v1/users", None, false);
    call!(PUT "/healthz" "/healthz", None, false);

    // Request bodies: every schema-invalid body is refused with a 400, and bodies the schema
    // accepts are not refused as malformed.
    let operations = [
        (
            "/v1/users",
            json!({ "email": "fresh1@example.org", "password": GOOD_PASSWORD }),
        ),
        ("/v1/sessions", json!({ "email": email, "password": "x" })),
        (
            "/v1/password/change",
            json!({ "email": email, "current_password": "x", "new_password": "y" }),
        ),
        (
            "/v1/password/reset-requests",
            json!({ "email": "x@example.org" }),
        ),
        (
            "/v1/password/resets",
            json!({ "token": "t", "new_password": "y" }),
        ),
        ("/v1/password/check", json!({ "password": "x" })),
        ("/v1/email/verifications", json!({ "token": "t" })),
        (
            "/v1/email/verification-requests",
            json!({ "email": "x@example.org" }),
        ),
    ];
    let mut refused = 0;
    for (path, base) in operations {
        let mut bodies = vec![json!({}), json!([]), base.clone()];
        let mut extra = base.clone();
        extra["admin"] = json!(true);
        bodies.push(extra);
        for field in base.as_object().unwrap().keys() {
            for value in [json!(""), Value::Null, json!(5), json!(["a@example.org"])] {
                let mut variant = base.clone();
                variant[field] = value;
                bodies.push(variant);
            }
        }
        for body in bodies {
            let response = send(Method::POST, path.to_owned(), Some(body.clone()), false)
                .await
                .unwrap();
            let (status, problem) = contract.check(Method::POST, path, response).await;
            if contract.request_valid(path, &body) {
                assert!(
                    !matches!(
                        kind(&problem),
                        "invalid-body" | "malformed-json" | "invalid-email"
                    ),
                    "{path} {body}: the schema accepts it, the server refused it: {problem}"
                );
            } else {
                refused += 1;
                assert_eq!(
                    status,
                    StatusCode::BAD_REQUEST,
                    "{path} {body}: the schema refuses it, the server answered {status} {problem}"
                );
            }
        }
    }
    eprintln!("{refused} schema-invalid request bodies, each refused with 400");
    let check_null = json!({ "password": GOOD_PASSWORD, "email": null, "display_name": null });
    assert!(contract.request_valid("/v1/password/check", &check_null));

    // Every operation was seen succeeding and failing.
    let seen = contract.seen.lock().unwrap().clone();
    for (path, item) in contract.document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let statuses: Vec<u16> = seen
                .iter()
                .filter(|(m, p, _)| m.eq_ignore_ascii_case(method) && p == path)
                .map(|(_, _, status)| *status)
                .collect();
            assert!(
                statuses.iter().any(|status| (200..300).contains(status)),
                "{method} {path}: no success seen ({statuses:?})"
            );
            let probes = ["/healthz", "/readyz", "/metrics", "/openapi.json"];
            if !probes.contains(&path.as_str()) {
                assert!(
                    statuses.iter().any(|status| *status >= 400),
                    "{method} {path}: no failure seen ({statuses:?})"
                );
            }
        }
    }
    eprintln!(
        "responses checked against the document: {} distinct (operation, status) pairs",
        seen.len()
    );
}
