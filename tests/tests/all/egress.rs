//! A hostile network plugin against the egress gateway: it only reaches what its allowlist
//! names, never a private address by accident, never with a spoofed Host, and never learns a
//! secret's value.

use harness::{
    PluginDir, components, quick_policy, slot,
    upstream::{Reply, TestServer},
};
use policy_host::{
    BreachOutcome, PluginKind, PolicyHost,
    egress::config::{DestinationConfig, SecretSource},
};
use std::path::Path;

const SECRET_VALUE: &str = "s3cr3t-v4lue-0f-the-h0st";

fn destination(url: String, secrets: &[&str]) -> DestinationConfig {
    DestinationConfig {
        url,
        allow_private: true,
        secrets: secrets.iter().map(ToString::to_string).collect(),
        cache_ttl: None,
        idempotency_header: None,
        policy: Some(quick_policy()),
    }
}

/// An echo server: answers with the request it got (so a leak back to the plugin would show).
async fn echo_server() -> TestServer {
    TestServer::start(|request| Reply::ok(format!("you sent {}", request.everything()))).await
}

struct Setup {
    _dir: PluginDir,
    host: PolicyHost,
    bound: TestServer,
    unbound: TestServer,
    outsider: TestServer,
}

/// The hostile plugin may reach `bound` (with secret `api-key`) and `unbound` (no secrets);
/// `outsider` is a server on the same machine that is not on its allowlist.
async fn setup() -> Setup {
    let (bound, unbound, outsider) = (
        echo_server().await,
        echo_server().await,
        echo_server().await,
    );
    let dir = PluginDir::new().unwrap();
    dir.publish("hostile", Path::new(components::HOSTILE_EGRESS))
        .unwrap();
    let mut config = dir.config();
    config.egress.secrets.insert(
        "api-key".to_owned(),
        SecretSource::Value(SECRET_VALUE.to_owned()),
    );
    let mut hostile = slot(PluginKind::BreachCheck, &[]);
    hostile.egress = vec![
        destination(bound.url(), &["api-key"]),
        destination(unbound.url(), &[]),
        // On the list but without allow-private: the SSRF guard must still refuse it.
        DestinationConfig {
            allow_private: false,
            ..destination("http://169.254.169.254".to_owned(), &[])
        },
    ];
    config.slots.insert("hostile".to_owned(), hostile);
    let host = PolicyHost::start(&config).await.unwrap();
    Setup {
        _dir: dir,
        host,
        bound,
        unbound,
        outsider,
    }
}

/// Runs one hostile command and returns what the plugin saw.
async fn run(host: &PolicyHost, command: &str) -> String {
    match host.check_breach("hostile", command).await.outcome {
        BreachOutcome::Unknown { reason } => reason,
        other => panic!("the hostile plugin always reports unknown, got {other:?}"),
    }
}

#[tokio::test]
async fn only_allowlisted_destinations_are_reached() {
    let setup = setup().await;
    let seen = run(&setup.host, &format!("get {}/ok", setup.unbound.url())).await;
    assert!(seen.starts_with("status=200"), "{seen}");
    assert_eq!(setup.unbound.request_count(), 1);

    // Same machine, another port: not on the list.
    let seen = run(&setup.host, &format!("get {}/steal", setup.outsider.url())).await;
    assert!(seen.contains("HttpRequestDenied"), "{seen}");
    // A host that is not on the list at all.
    let seen = run(&setup.host, "get http://example.invalid/anything").await;
    assert!(seen.contains("HttpRequestDenied"), "{seen}");
    // HTTPS to an allowed host:port is another scheme: denied.
    let seen = run(
        &setup.host,
        &format!("get https://127.0.0.1:{}/ok", setup.unbound.port()),
    )
    .await;
    assert!(seen.contains("HttpRequestDenied"), "{seen}");
    assert_eq!(
        setup.outsider.request_count(),
        0,
        "the outsider never heard a thing"
    );
}

#[tokio::test]
async fn cloud_metadata_is_refused() {
    let setup = setup().await;
    // Allowlisted by URL, but 169.254.0.0/16 is link-local and allow-private is off.
    let seen = run(&setup.host, "get http://169.254.169.254/latest/meta-data/").await;
    assert!(seen.contains("DestinationIpProhibited"), "{seen}");
    // And not allowlisted on another port.
    let seen = run(
        &setup.host,
        "get http://169.254.169.254:8080/latest/meta-data/",
    )
    .await;
    assert!(seen.contains("HttpRequestDenied"), "{seen}");
}

#[tokio::test]
async fn a_spoofed_host_header_changes_nothing() {
    let setup = setup().await;
    let seen = run(
        &setup.host,
        &format!(
            "get-with-header {}/ok host evil.example",
            setup.unbound.url()
        ),
    )
    .await;
    // wasi:http forbids the header outright; had it slipped through, the gateway drops it.
    assert!(
        seen.contains("Forbidden") || seen.starts_with("status=200"),
        "{seen}"
    );
    for request in setup.unbound.requests() {
        assert_eq!(
            request.header("host"),
            Some(format!("127.0.0.1:{}", setup.unbound.port()).as_str())
        );
    }
    assert!(
        setup
            .unbound
            .requests()
            .iter()
            .all(|request| !request.everything().contains("evil.example"))
    );
}

#[tokio::test]
async fn secrets_are_substituted_only_where_bound_and_never_seen_by_the_plugin() {
    let setup = setup().await;
    let seen = run(
        &setup.host,
        &format!(
            "post {}/verify secret={{{{secret:api-key}}}}",
            setup.bound.url()
        ),
    )
    .await;
    assert!(seen.starts_with("status=200"), "{seen}");
    let received = setup.bound.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&received[0].body),
        format!("secret={SECRET_VALUE}"),
        "the upstream got the value"
    );
    assert!(
        !seen.contains(SECRET_VALUE),
        "the echo was scrubbed before the plugin saw it: {seen}"
    );
    assert!(seen.contains("[redacted]"), "{seen}");

    // The same secret towards a destination it is not bound to: refused, nothing sent.
    let seen = run(
        &setup.host,
        &format!(
            "post {}/collect secret={{{{secret:api-key}}}}",
            setup.unbound.url()
        ),
    )
    .await;
    assert!(seen.contains("HttpRequestDenied"), "{seen}");
    assert_eq!(setup.unbound.request_count(), 0);
    // In a header, too.
    let seen = run(
        &setup.host,
        &format!(
            "get-with-header {}/collect x-token {{{{secret:api-key}}}}",
            setup.unbound.url()
        ),
    )
    .await;
    assert!(seen.contains("HttpRequestDenied"), "{seen}");
    // A secret that does not exist.
    let seen = run(
        &setup.host,
        &format!(
            "post {}/verify {{{{secret:root-password}}}}",
            setup.bound.url()
        ),
    )
    .await;
    assert!(seen.contains("HttpRequestDenied"), "{seen}");
    assert_eq!(setup.unbound.request_count(), 0);
    assert_eq!(setup.bound.request_count(), 1);
}

#[tokio::test]
async fn a_password_policy_plugin_has_no_network_at_all() {
    // The password-policy world has no wasi:http: a component importing it can't even load there.
    let dir = PluginDir::new().unwrap();
    dir.publish("password-policy", Path::new(components::HOSTILE_EGRESS))
        .unwrap();
    let mut config = dir.config();
    config.watch = false;
    let host = PolicyHost::start(&config).await.unwrap();
    let error = host.catalog().reload("password-policy").await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("implements the breach-check world"),
        "{error}"
    );
}

/// The hostile plugin with path-prefixed entries on one upstream: `/range/` and `/v1`.
struct PrefixedSetup {
    _dir: PluginDir,
    host: PolicyHost,
    upstream: TestServer,
}

async fn prefixed_setup() -> PrefixedSetup {
    let upstream = echo_server().await;
    let dir = PluginDir::new().unwrap();
    dir.publish("hostile", Path::new(components::HOSTILE_EGRESS))
        .unwrap();
    let mut config = dir.config();
    let mut hostile = slot(PluginKind::BreachCheck, &[]);
    hostile.egress = vec![
        destination(format!("{}/range/", upstream.url()), &[]),
        destination(format!("{}/v1", upstream.url()), &[]),
    ];
    config.slots.insert("hostile".to_owned(), hostile);
    let host = PolicyHost::start(&config).await.unwrap();
    PrefixedSetup {
        _dir: dir,
        host,
        upstream,
    }
}

/// True for the paths the prefixed setup allows, already in normal form.
fn allowed_normal_path(path: &str) -> bool {
    let path_only = path.split('?').next().unwrap_or_default();
    let lower = path_only.to_ascii_lowercase();
    let under =
        path_only.starts_with("/range/") || path_only == "/v1" || path_only.starts_with("/v1/");
    let normal = !path_only.contains('\\')
        && !["%2e", "%2f", "%5c", "%25"]
            .iter()
            .any(|encoded| lower.contains(encoded))
        && path_only
            .split('/')
            .all(|segment| !matches!(segment.split(';').next(), Some("." | "..")));
    under && normal
}

#[tokio::test]
async fn path_tricks_are_refused_and_only_normal_paths_reach_the_upstream() {
    let setup = prefixed_setup().await;
    let url = setup.upstream.url();
    for allowed in [
        "/range/ABCDE",
        "/range/ABCDE?mode=padded",
        "/v1",
        "/v1/status",
    ] {
        let seen = run(&setup.host, &format!("get {url}{allowed}")).await;
        assert!(seen.starts_with("status=200"), "{allowed}: {seen}");
    }
    assert_eq!(setup.upstream.request_count(), 4);

    for trick in [
        "/range/../admin",
        "/range/./../admin",
        "/range/%2e%2e/admin",
        "/range/%2E%2E/admin",
        "/range/.%2e/admin",
        "/range/..%2fadmin",
        "/range/..%2Fadmin",
        "/range/..%5cadmin",
        "/range/..;/admin",
        "/range/%252e%252e/admin",
        "/range/./ABCDE",
        "/rangeX/ABCDE",
        "/v1X",
        "/v1-admin",
        "/v1/../admin",
    ] {
        let seen = run(&setup.host, &format!("get {url}{trick}")).await;
        assert!(seen.contains("HttpRequestDenied"), "{trick}: {seen}");
    }
    // A raw backslash (valid in an `http::Uri` path) reaches the gateway and is refused there.
    let seen = run(&setup.host, &format!("get {url}/range\\..\\admin")).await;
    assert!(seen.contains("HttpRequestDenied"), "{seen}");

    let received = setup.upstream.requests();
    assert_eq!(received.len(), 4, "no trick reached the upstream");
    for request in &received {
        assert!(allowed_normal_path(&request.path), "{}", request.path);
        assert!(!request.path.contains("admin"), "{}", request.path);
    }
}

#[tokio::test]
async fn userinfo_is_refused_and_never_reaches_the_host_header() {
    let setup = prefixed_setup().await;
    let port = setup.upstream.port();
    for userinfo in ["admin:pw@", "admin@", "@"] {
        let seen = run(
            &setup.host,
            &format!("get http://{userinfo}127.0.0.1:{port}/range/ABCDE"),
        )
        .await;
        assert!(seen.contains("HttpRequestDenied"), "{userinfo}: {seen}");
    }
    assert_eq!(setup.upstream.request_count(), 0);

    let seen = run(
        &setup.host,
        &format!("get http://127.0.0.1:{port}/range/ABCDE"),
    )
    .await;
    assert!(seen.starts_with("status=200"), "{seen}");
    let received = setup.upstream.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].header("host"),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert!(!received[0].everything().contains("admin"));
}

#[tokio::test]
async fn odd_host_spellings_are_refused() {
    let setup = prefixed_setup().await;
    let port = setup.upstream.port();
    for host in [
        "0x7f.1",
        "0x7f.0.0.1",
        "2130706433",
        "0177.0.0.1",
        "127.1",
        "127.0.0.1.",
        "[::ffff:127.0.0.1]",
    ] {
        let seen = run(
            &setup.host,
            &format!("get http://{host}:{port}/range/ABCDE"),
        )
        .await;
        assert!(seen.contains("HttpRequestDenied"), "{host}: {seen}");
    }
    assert_eq!(setup.upstream.request_count(), 0);
}

#[tokio::test]
async fn forwarding_and_hop_by_hop_headers_never_reach_the_upstream() {
    let setup = prefixed_setup().await;
    let url = setup.upstream.url();
    let headers = [
        ("forwarded", "for=10.0.0.1;host=admin.internal"),
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-host", "admin.internal"),
        ("x-forwarded-proto", "https"),
        ("x-real-ip", "10.0.0.1"),
        ("via", "1.1-internal-proxy"),
        ("te", "trailers"),
        ("trailer", "x-checksum"),
        ("accept-encoding", "gzip"),
        ("x-original-url", "/admin"),
        ("proxy-authorization", "Basic-YWRtaW46cHc="),
        ("connection", "x-request-id"),
        ("upgrade", "websocket"),
    ];
    for (index, (name, value)) in headers.iter().enumerate() {
        // A distinct path each time, so no answer comes from the cache.
        let seen = run(
            &setup.host,
            &format!("get-with-header {url}/range/h{index} {name} {value}"),
        )
        .await;
        // wasi:http forbids some of these outright; the gateway drops the rest.
        assert!(
            seen.starts_with("status=200") || seen.contains("Forbidden"),
            "{name}: {seen}"
        );
    }
    let received = setup.upstream.requests();
    assert!(!received.is_empty());
    for request in &received {
        for (name, _) in &headers {
            if *name == "accept-encoding" {
                continue;
            }
            assert_eq!(request.header(name), None, "{name} reached the upstream");
        }
        assert_eq!(request.header("accept-encoding"), Some("identity"));
        let everything = request.everything();
        for leaked in [
            "10.0.0.1",
            "admin.internal",
            "gzip",
            "/admin",
            "YWRtaW46cHc=",
        ] {
            assert!(
                !everything.contains(leaked),
                "{leaked} reached the upstream"
            );
        }
    }
}

/// The bundled breach check against an HTTPS range server that speaks HTTP/2 only (as the real
/// one behind Cloudflare does): the gateway negotiates `h2` by ALPN, the answers are right,
/// and every lookup (distinct prefixes, so the cache can't answer) shares one connection.
#[tokio::test]
async fn the_breach_check_works_over_http2() {
    let hibp = harness::tls_hibp::TlsHibpServer::start(&[("password123", 2_254_650)]).await;
    let dir = PluginDir::new().unwrap();
    dir.publish("breach-check", harness::breach_check_component())
        .unwrap();
    let mut config = dir.config();
    config.egress.tls_roots = vec![hibp.ca.clone()];
    config.slots.insert(
        "breach-check".to_owned(),
        harness::breach_slot(&hibp.url, quick_policy(), &[]),
    );
    let host = PolicyHost::start(&config).await.unwrap();

    let breached = host.check_breach("breach-check", "password123").await;
    assert_eq!(
        breached.outcome,
        BreachOutcome::Breached { count: 2_254_650 }
    );
    for password in ["correct horse battery staple", "Tr0ub4dor&3", "hunter2"] {
        let clean = host.check_breach("breach-check", password).await;
        assert_eq!(clean.outcome, BreachOutcome::Clean, "{password}");
    }
    assert_eq!(hibp.requests_over_h2(), 4, "every lookup went over HTTP/2");
    assert_eq!(hibp.accepted(), 1, "and all on one connection");
}
