//! HTTP/2 by ALPN, attacked through the real gateway against real TLS upstreams on 127.0.0.1
//! ([`upstream`]): one shared connection for concurrent requests, HTTP/1.1 when that is all
//! the upstream offers, a connection that goes away between requests replaced without a
//! failure, a stalled stream timing out alone, an oversized body refused, and no
//! connection-specific header sent over HTTP/2.

mod upstream;

use crate::{
    Caller, CallerPolicy, EgressError, EgressGateway,
    cache::BufferedResponse,
    client::AttemptError,
    config::{CallPolicy, DestinationConfig, EgressConfig},
};
use bytes::Bytes;
use http::{Request, StatusCode};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use upstream::{AfterFirst, Alpn, Upstream};

/// A gateway trusting `upstream`'s CA, and a plugin policy for it (no retries unless asked:
/// a retry would hide what the pool does).
fn gateway_for(upstream: &Upstream, policy: CallPolicy) -> (Arc<EgressGateway>, CallerPolicy) {
    let gateway = EgressGateway::new(EgressConfig {
        tls_roots: vec![upstream.ca.clone()],
        ..EgressConfig::default()
    })
    .unwrap();
    let destination = DestinationConfig {
        url: format!("{}/", upstream.origin),
        allow_private: true,
        secrets: Vec::new(),
        cache_ttl: None,
        idempotency_header: None,
        policy: None,
    };
    let policy =
        CallerPolicy::new(Caller::plugin("breach-check"), &[destination], &policy).unwrap();
    (Arc::new(gateway), policy)
}

fn no_retries() -> CallPolicy {
    CallPolicy {
        max_retries: 0,
        ..CallPolicy::default()
    }
}

async fn get(
    gateway: &EgressGateway,
    policy: &CallerPolicy,
    url: &str,
) -> Result<BufferedResponse, EgressError> {
    let request = Request::get(url).body(Bytes::new()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    gateway.send(policy, request, None, deadline).await
}

fn text(response: &BufferedResponse) -> &str {
    std::str::from_utf8(&response.body).unwrap()
}

#[tokio::test]
async fn an_h2_only_upstream_answers_over_http2() {
    let upstream = Upstream::start(Alpn::H2, AfterFirst::KeepServing).await;
    let (gateway, policy) = gateway_for(&upstream, no_retries());
    let url = format!("{}/hello", upstream.origin);
    for _ in 0..3 {
        let response = get(&gateway, &policy, &url).await.unwrap();
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(text(&response), "ok HTTP/2.0");
    }
    assert_eq!(
        upstream.accepted(),
        1,
        "sequential requests share one connection"
    );
    assert_eq!(gateway.pool().shared_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_requests_share_one_http2_connection() {
    // The upstream allows 8 streams at a time and answers after 20 ms: the other requests
    // queue on the connection rather than opening their own.
    let upstream = Upstream::start(Alpn::H2, AfterFirst::KeepServing).await;
    let (gateway, policy) = gateway_for(&upstream, no_retries());
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..50 {
        // Distinct URLs: the cache's single-flight would otherwise send one request for all.
        let url = format!("{}/slow?n={n}", upstream.origin);
        let (gateway, policy) = (gateway.clone(), policy.clone());
        requests.spawn(async move { get(&gateway, &policy, &url).await });
    }
    let mut answered = 0;
    while let Some(outcome) = requests.join_next().await {
        let response = outcome.unwrap().unwrap();
        assert_eq!(text(&response), "slow");
        answered += 1;
    }
    assert_eq!(answered, 50);
    assert_eq!(upstream.served(), 50);
    assert_eq!(
        upstream.accepted(),
        1,
        "50 concurrent requests, one connection"
    );
}

/// A connection checked back in right after its response was read may still be finishing that
/// exchange in its own task (on another worker thread here); the next request must wait for
/// it, not open another connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_http1_requests_reuse_one_connection() {
    let upstream = Upstream::start(Alpn::Http1, AfterFirst::KeepServing).await;
    let (gateway, policy) = gateway_for(&upstream, no_retries());
    for i in 0..300 {
        let url = format!("{}/hello?n={i}", upstream.origin);
        let response = get(&gateway, &policy, &url).await.unwrap();
        assert_eq!(text(&response), "ok HTTP/1.1");
    }
    assert_eq!(upstream.accepted(), 1, "300 requests, one connection");
}

#[tokio::test]
async fn an_upstream_offering_only_http1_is_spoken_to_in_http1() {
    let upstream = Upstream::start(Alpn::Http1, AfterFirst::KeepServing).await;
    let (gateway, policy) = gateway_for(&upstream, no_retries());
    let url = format!("{}/hello", upstream.origin);
    for _ in 0..3 {
        let response = get(&gateway, &policy, &url).await.unwrap();
        assert_eq!(text(&response), "ok HTTP/1.1");
    }
    assert_eq!(
        upstream.accepted(),
        1,
        "the keep-alive connection is reused"
    );
    assert_eq!(gateway.pool().shared_count(), 0);
    assert_eq!(gateway.pool().idle_count(), 1);
}

#[tokio::test]
async fn concurrent_requests_to_an_http1_upstream_each_get_a_connection() {
    let upstream = Upstream::start(Alpn::Http1, AfterFirst::KeepServing).await;
    let (gateway, policy) = gateway_for(&upstream, no_retries());
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..4 {
        let url = format!("{}/slow?n={n}", upstream.origin);
        let (gateway, policy) = (gateway.clone(), policy.clone());
        requests.spawn(async move { get(&gateway, &policy, &url).await });
    }
    while let Some(outcome) = requests.join_next().await {
        assert_eq!(text(&outcome.unwrap().unwrap()), "slow");
    }
    assert!(
        upstream.accepted() >= 2,
        "HTTP/1.1 carries one request at a time: {} connections",
        upstream.accepted()
    );
}

#[tokio::test]
async fn a_goaway_between_requests_is_met_with_a_new_connection() {
    let upstream = Upstream::start(Alpn::H2, AfterFirst::GoAway).await;
    let (gateway, policy) = gateway_for(&upstream, no_retries());
    let url = format!("{}/hello", upstream.origin);
    for round in 1..=3 {
        let response = get(&gateway, &policy, &url).await;
        assert_eq!(text(&response.unwrap()), "ok HTTP/2.0", "round {round}");
        upstream.closed_one().await;
    }
    assert_eq!(
        upstream.accepted(),
        3,
        "each GOAWAY'd connection was replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_a_goaway_go_out_again_on_a_new_connection() {
    // No waiting for the upstream to close: each request races the GOAWAY that the previous
    // answer triggered. A stream the upstream never processed (above the GOAWAY's last stream
    // id) must be sent again on a fresh connection, without a retry of the gateway's own.
    let upstream = Upstream::start(Alpn::H2, AfterFirst::GoAway).await;
    let (gateway, policy) = gateway_for(&upstream, no_retries());
    for round in 0..30 {
        let url = format!("{}/hello?round={round}", upstream.origin);
        let response = get(&gateway, &policy, &url).await;
        assert_eq!(text(&response.unwrap()), "ok HTTP/2.0", "round {round}");
    }
}

#[tokio::test]
async fn a_connection_dropped_between_requests_is_met_with_a_new_connection() {
    let upstream = Upstream::start(Alpn::H2, AfterFirst::Drop).await;
    let (gateway, policy) = gateway_for(&upstream, no_retries());
    let url = format!("{}/hello", upstream.origin);
    for round in 1..=3 {
        let response = get(&gateway, &policy, &url).await;
        assert_eq!(text(&response.unwrap()), "ok HTTP/2.0", "round {round}");
        upstream.closed_one().await;
    }
    assert_eq!(upstream.accepted(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_stream_times_out_alone() {
    let upstream = Upstream::start(Alpn::H2, AfterFirst::KeepServing).await;
    let (gateway, policy) = gateway_for(
        &upstream,
        CallPolicy {
            first_byte_timeout: Duration::from_millis(300),
            ..no_retries()
        },
    );
    let stalled = tokio::spawn({
        let (gateway, policy) = (gateway.clone(), policy.clone());
        let url = format!("{}/stall", upstream.origin);
        async move { get(&gateway, &policy, &url).await }
    });
    let url = format!("{}/hello", upstream.origin);
    // While the stalled stream waits, others on the same connection are answered.
    for _ in 0..10 {
        assert_eq!(
            text(&get(&gateway, &policy, &url).await.unwrap()),
            "ok HTTP/2.0"
        );
    }
    let stalled = stalled.await.unwrap();
    assert_eq!(
        stalled.unwrap_err(),
        EgressError::Attempt(AttemptError::FirstByteTimeout)
    );
    // The connection outlives the reset stream.
    assert_eq!(
        text(&get(&gateway, &policy, &url).await.unwrap()),
        "ok HTTP/2.0"
    );
    assert_eq!(upstream.accepted(), 1);
}

#[tokio::test]
async fn an_oversized_http2_body_is_refused_and_the_connection_lives_on() {
    let upstream = Upstream::start(Alpn::H2, AfterFirst::KeepServing).await;
    let (gateway, policy) = gateway_for(
        &upstream,
        CallPolicy {
            max_response_bytes: 64 << 10,
            ..no_retries()
        },
    );
    let refused = get(&gateway, &policy, &format!("{}/big", upstream.origin)).await;
    assert_eq!(
        refused.unwrap_err(),
        EgressError::Attempt(AttemptError::ResponseTooLarge { limit: 64 << 10 })
    );
    let url = format!("{}/hello", upstream.origin);
    assert_eq!(
        text(&get(&gateway, &policy, &url).await.unwrap()),
        "ok HTTP/2.0"
    );
    assert_eq!(upstream.accepted(), 1);
}

#[tokio::test]
async fn no_connection_specific_header_goes_out_over_http2() {
    let upstream = Upstream::start(Alpn::H2, AfterFirst::KeepServing).await;
    let (gateway, policy) = gateway_for(&upstream, no_retries());
    let url = format!("{}/headers", upstream.origin);
    let request = Request::get(&url)
        .header("connection", "keep-alive, x-hop")
        .header("keep-alive", "timeout=5")
        .header("upgrade", "h2c")
        .header("transfer-encoding", "chunked")
        .header("te", "gzip")
        .header("x-hop", "1")
        .header("x-kept", "1")
        .body(Bytes::new())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let response = gateway
        .send(&policy, request, None, deadline)
        .await
        .unwrap();
    let seen: Vec<&str> = text(&response).lines().collect();
    for banned in [
        "connection",
        "keep-alive",
        "upgrade",
        "transfer-encoding",
        "te",
        "x-hop",
        "host",
    ] {
        assert!(!seen.contains(&banned), "{banned} went out: {seen:?}");
    }
    assert!(seen.contains(&"x-kept"), "{seen:?}");
    let authority = format!(
        ":authority {}",
        upstream.origin.trim_start_matches("https://")
    );
    assert!(seen.contains(&authority.as_str()), "{seen:?}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let upstream = Upstream::start(Alpn::H2, AfterFirst::KeepServing).await;
    let gateway = EgressGateway::new(EgressConfig::default()).unwrap();
    let destination = DestinationConfig {
        url: format!("{}/", upstream.origin),
        allow_private: true,
        secrets: Vec::new(),
        cache_ttl: None,
        idempotency_header: None,
        policy: None,
    };
    let policy = CallerPolicy::new(
        Caller::plugin("breach-check"),
        &[destination],
        &no_retries(),
    )
    .unwrap();
    let refused = get(&gateway, &policy, &format!("{}/hello", upstream.origin)).await;
    assert!(
        matches!(refused, Err(EgressError::Attempt(AttemptError::Tls(_)))),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_tls_roots_file_without_a_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.pem");
    std::fs::write(&path, "not a certificate\n").unwrap();
    let refused = EgressGateway::new(EgressConfig {
        tls_roots: vec![path],
        ..EgressConfig::default()
    });
    assert!(
        matches!(refused, Err(crate::SetupError::TlsRoots { .. })),
        "refused: {:?}",
        refused.err()
    );
}
