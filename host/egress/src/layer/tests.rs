//! The stack's order, attacked through the real gateway against sockets on 127.0.0.1: an open
//! breaker must answer before any lookup, a refusal of the gateway's own must never open a
//! breaker, callers must not share breakers, and the retry policy must only repeat what is
//! safe to repeat.

use super::retry::{JitteredRetry, RetryPolicy};
use crate::{
    Caller, CallerPolicy, EgressError, EgressGateway, ResolveError,
    breaker::BreakerState,
    cache::BufferedResponse,
    client::AttemptError,
    config::{BreakerConfig, CallPolicy, DestinationConfig, EgressConfig},
    error::Denial,
};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use std::time::{Duration, Instant};

/// A breaker that opens on the first failure and stays open for the test.
fn touchy() -> CallPolicy {
    CallPolicy {
        connect_timeout: Duration::from_millis(200),
        max_retries: 0,
        breaker: BreakerConfig {
            failure_rate: 1.0,
            minimum_calls: 1,
            open_for: Duration::from_mins(1),
            ..BreakerConfig::default()
        },
        ..CallPolicy::default()
    }
}

fn destination(url: &str, allow_private: bool) -> DestinationConfig {
    DestinationConfig {
        url: url.to_owned(),
        allow_private,
        secrets: Vec::new(),
        cache_ttl: None,
        idempotency_header: Some("idempotency-key".to_owned()),
        policy: None,
    }
}

fn get(url: &str) -> Request<Bytes> {
    Request::get(url).body(Bytes::new()).unwrap()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[tokio::test]
async fn an_open_breaker_answers_before_any_lookup() {
    // A name server that never answers: every lookup waits for the connect timeout.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let gateway = EgressGateway::new(EgressConfig {
        dns_servers: vec![silent.local_addr().unwrap()],
        ..EgressConfig::default()
    })
    .unwrap();
    let url = "http://upstream.test:8080/";
    let policy = CallerPolicy::new(
        Caller::plugin("breach-check"),
        &[destination(url, true)],
        &touchy(),
    )
    .unwrap();

    let first = gateway.send(&policy, get(url), None, soon()).await;
    assert!(
        matches!(
            first,
            Err(EgressError::Resolve(ResolveError::Timeout { .. }))
        ),
        "{first:?}"
    );
    assert_eq!(
        gateway.breaker_state(&policy.caller, "http://upstream.test:8080"),
        Some(BreakerState::Open),
        "a hung lookup is an upstream failure"
    );

    let started = Instant::now();
    let second = gateway.send(&policy, get(url), None, soon()).await;
    assert!(
        matches!(second, Err(EgressError::BreakerOpen { .. })),
        "{second:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "the breaker answered only after {:?}: the lookup ran first",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_ssrf_refusal_never_opens_the_breaker() {
    let gateway = EgressGateway::new(EgressConfig::default()).unwrap();
    let url = "http://127.0.0.1:9/";
    let policy = CallerPolicy::new(
        Caller::plugin("captcha"),
        &[destination(url, false)],
        &touchy(),
    )
    .unwrap();
    for _ in 0..3 {
        let refused = gateway.send(&policy, get(url), None, soon()).await;
        assert!(
            matches!(refused, Err(EgressError::AddressRefused(_))),
            "{refused:?}"
        );
    }
    assert_eq!(
        gateway.breaker_state(&policy.caller, "http://127.0.0.1:9"),
        Some(BreakerState::Closed)
    );
}

#[tokio::test]
async fn callers_do_not_share_breakers_and_denials_name_the_caller() {
    // Nothing listens on the port: connection refused, the breaker opens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("http://127.0.0.1:{port}/");
    let gateway = EgressGateway::new(EgressConfig::default()).unwrap();
    let plugin = CallerPolicy::new(
        Caller::plugin("outbox"),
        &[destination(&url, true)],
        &touchy(),
    )
    .unwrap();
    let service = CallerPolicy::new(
        Caller::service("outbox"),
        &[destination(&url, true)],
        &touchy(),
    )
    .unwrap();

    let refused = gateway.send(&plugin, get(&url), None, soon()).await;
    assert!(
        matches!(refused, Err(EgressError::Attempt(AttemptError::Connect(_)))),
        "{refused:?}"
    );
    let origin = format!("http://127.0.0.1:{port}");
    assert_eq!(
        gateway.breaker_state(&plugin.caller, &origin),
        Some(BreakerState::Open)
    );
    assert_eq!(gateway.breaker_state(&service.caller, &origin), None);
    let again = gateway.send(&service, get(&url), None, soon()).await;
    assert!(
        matches!(again, Err(EgressError::Attempt(AttemptError::Connect(_)))),
        "a plugin's open breaker must not refuse the service: {again:?}"
    );

    let elsewhere = gateway
        .send(&service, get("http://127.0.0.1:1/admin"), None, soon())
        .await;
    match elsewhere {
        Err(EgressError::Denied(Denial::NotAllowed { caller, .. })) => {
            assert_eq!(caller, "service `outbox`");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_retry_policy_repeats_only_what_is_safe() {
    let policy = CallerPolicy::new(
        Caller::service("notification-service"),
        &[destination("http://127.0.0.1:1/", true)],
        &CallPolicy::default(),
    )
    .unwrap();
    let rule = &policy.rules[0];
    let request = |method: Method, idempotency_key: bool| {
        let mut builder = Request::builder()
            .method(method)
            .uri("http://127.0.0.1:1/x");
        if idempotency_key {
            builder = builder.header("idempotency-key", "k1");
        }
        builder.body(Bytes::new()).unwrap()
    };
    let status = |code: u16| -> Result<BufferedResponse, EgressError> {
        Ok(BufferedResponse {
            status: StatusCode::from_u16(code).unwrap(),
            headers: http::HeaderMap::new(),
            body: Bytes::new(),
            ..BufferedResponse::default()
        })
    };
    let failed = |error: AttemptError| -> Result<BufferedResponse, EgressError> {
        Err(EgressError::Attempt(error))
    };
    let retries = |request: &Request<Bytes>, outcome, attempt| {
        JitteredRetry
            .retry_after(rule, request, &outcome, attempt)
            .is_some()
    };
    let post = request(Method::POST, false);
    let keyed_post = request(Method::POST, true);
    let get = request(Method::GET, false);

    assert!(retries(&get, status(503), 0));
    assert!(!retries(&get, status(503), 1), "max-retries is 1");
    assert!(!retries(&get, status(500), 0), "500 is not worth repeating");
    assert!(
        !retries(&post, status(503), 0),
        "a POST may have had effects"
    );
    assert!(
        retries(&keyed_post, status(503), 0),
        "unless it carries its key"
    );
    assert!(
        retries(&post, failed(AttemptError::ConnectTimeout), 0),
        "nothing was sent"
    );
    assert!(!retries(&post, failed(AttemptError::FirstByteTimeout), 0));
    assert!(retries(&get, failed(AttemptError::FirstByteTimeout), 0));
    assert!(!retries(
        &get,
        failed(AttemptError::ResponseTooLarge { limit: 1 }),
        0
    ));
    assert!(!retries(&get, Err(EgressError::DeadlineExceeded), 0));
}

/// A server on 127.0.0.1 answering every request 200 with `max-age`; counts the requests.
async fn cacheable_upstream() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::{Arc, atomic::AtomicUsize, atomic::Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/range/", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncache-control: public, max-age=600\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    .await;
            });
        }
    });
    (url, count)
}

#[tokio::test]
async fn an_observed_call_says_whether_the_cache_answered_it() {
    let (url, upstream) = cacheable_upstream().await;
    let gateway = EgressGateway::new(EgressConfig::default()).unwrap();
    let policy = CallerPolicy::new(
        Caller::plugin("breach-check"),
        &[destination(&url, true)],
        &CallPolicy::default(),
    )
    .unwrap();
    let target = format!("{url}ABCDE");
    let (first, cached) =
        crate::cache::observe_cache(gateway.send(&policy, get(&target), None, soon())).await;
    assert_eq!(first.unwrap().status, StatusCode::OK);
    assert!(!cached, "the first call went upstream");
    let (second, cached) =
        crate::cache::observe_cache(gateway.send(&policy, get(&target), None, soon())).await;
    assert_eq!(second.unwrap().status, StatusCode::OK);
    assert!(cached, "the second call was answered by the cache");
    assert_eq!(upstream.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Another range is another entry.
    let (_, cached) = crate::cache::observe_cache(gateway.send(
        &policy,
        get(&format!("{url}FFFFF")),
        None,
        soon(),
    ))
    .await;
    assert!(!cached);
    assert_eq!(upstream.load(std::sync::atomic::Ordering::SeqCst), 2);
}
