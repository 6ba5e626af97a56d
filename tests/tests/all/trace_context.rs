//! W3C trace context across the hops a request causes: the request's `traceparent` reaches its
//! events (file, HTTP in binary mode), the Notification Service call and the token request made
//! for it; Pwned Passwords gets none; a plugin destination that opts in gets it.

use harness::{
    captcha_vendors::{CaptchaServer, Vendor},
    hibp::HibpServer,
    internal_services::{CLIENT_ID, CLIENT_SECRET, ResourceServer, TokenEndpoint},
    service::TestService,
    wait_until,
};
use policy_host::egress::config::SecretSource;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use user_service::{
    outbound::{discovery::ServiceLocation, token::ClientCredentialsConfig},
    outbox::sinks::{HttpMode, SinkConfig},
};

const REGISTER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const RESET_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The trace id of a `traceparent`.
fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

#[tokio::test]
async fn a_requests_trace_reaches_its_events_and_calls_but_not_third_parties() {
    let hibp = HibpServer::start(&[]).await;
    let turnstile = CaptchaServer::start(Vendor::Turnstile).await;
    let tokens = TokenEndpoint::start(300).await;
    let notifications =
        ResourceServer::start("/notifications/email", Some(tokens.book.clone())).await;
    let consumer = ResourceServer::start("/events", Some(tokens.book.clone())).await;
    let service = TestService::start(&hibp.server.url(), Some(&turnstile.url()), |config| {
        for (name, url) in [
            ("notification-service", notifications.url()),
            ("event-consumer", consumer.url()),
        ] {
            config.services.insert(
                name.to_owned(),
                ServiceLocation {
                    url: Some(url),
                    ..ServiceLocation::default()
                },
            );
        }
        config.service_auth = Some(ClientCredentialsConfig {
            token_url: tokens.token_url(),
            client_id: CLIENT_ID.to_owned(),
            client_secret: Some(SecretSource::Value(CLIENT_SECRET.to_owned())),
            client_assertion: None,
            scope: None,
            audience: None,
            refresh_before_s: 60,
            allow_private: true,
        });
        let file = match &config.events.sinks[0] {
            SinkConfig::File { path, .. } => path.clone(),
            other => panic!("the test service starts with a file sink, not {other:?}"),
        };
        config.events.sinks = vec![
            SinkConfig::File {
                name: None,
                path: file,
            },
            SinkConfig::Http {
                name: None,
                service: "event-consumer".to_owned(),
                path: "/events".to_owned(),
                mode: HttpMode::Binary,
            },
            SinkConfig::NotificationEmail {
                name: None,
                service: "notification-service".to_owned(),
                path: "/notifications/email".to_owned(),
            },
        ];
        config.flows.captcha_on_register = true;
        // The CAPTCHA vendor stands in for a destination that opts in; Pwned Passwords does not.
        config.plugins.egress.trace_context_destinations = vec![turnstile.url()];
    })
    .await
    .unwrap();
    let client = Client::new();
    let response = client
        .post(service.url("/v1/users"))
        .header("traceparent", format!("00-{REGISTER_TRACE}-b7ad6b7169203331-01"))
        .json(&json!({ "email": "ana@example.org", "password": "correct horse battery staple", "captcha_token": "t-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let answered = response.headers()["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        trace_id(&answered),
        REGISTER_TRACE,
        "the response names the trace"
    );
    assert_ne!(
        answered,
        format!("00-{REGISTER_TRACE}-b7ad6b7169203331-01"),
        "a span of its own"
    );
    let response = client
        .post(service.url("/v1/password/reset-requests"))
        .header(
            "traceparent",
            format!("00-{RESET_TRACE}-00f067aa0ba902b7-01"),
        )
        .json(&json!({ "email": "ana@example.org", "captcha_token": "t-2" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    // The events (file sink: structured CloudEvents) carry their request's trace.
    let events: Vec<Value> = service.delivered_events().await;
    let trace_of = |event_type: &str| {
        events
            .iter()
            .find(|event| event["type"] == event_type)
            .and_then(|event| event["traceparent"].as_str())
            .map(|traceparent| trace_id(traceparent).to_owned())
    };
    assert_eq!(
        trace_of("UserRegisteredEventV1").as_deref(),
        Some(REGISTER_TRACE)
    );
    assert_eq!(
        trace_of("PasswordResetRequestedEventV1").as_deref(),
        Some(RESET_TRACE)
    );

    // The HTTP sink in binary mode: attributes as ce-* headers, the trace as traceparent.
    let posted = consumer.server.requests();
    let registered = posted
        .iter()
        .find(|request| request.header("ce-type") == Some("UserRegisteredEventV1"))
        .expect("the registration event in binary mode");
    assert_eq!(registered.header("ce-specversion"), Some("1.0"));
    assert_eq!(registered.header("ce-source"), Some("/user-service"));
    assert!(registered.header("ce-id").is_some() && registered.header("ce-time").is_some());
    assert_eq!(registered.header("content-type"), Some("application/json"));
    assert_eq!(
        registered.header("traceparent").map(trace_id),
        Some(REGISTER_TRACE)
    );
    let data: Value = serde_json::from_slice(&registered.body).unwrap();
    assert_eq!(data["email"], "ana@example.org", "the body is the data");

    // Each Notification Service call carries the trace of the request that caused it: the
    // reset's for the reset email, the registration's for the verification email (the two
    // are delivered concurrently, so they are told apart by their template).
    let template_of = |request: &harness::upstream::RecordedRequest| {
        serde_json::from_slice::<Value>(&request.body)
            .ok()
            .and_then(|body| body["templateId"].as_str().map(str::to_owned))
    };
    let both_sent = || {
        let templates: Vec<_> = notifications
            .server
            .requests()
            .iter()
            .filter_map(template_of)
            .collect();
        templates
            .iter()
            .any(|template| template == "password-reset")
            && templates
                .iter()
                .any(|template| template == "email-verification")
    };
    assert!(
        wait_until(Duration::from_secs(10), || async { both_sent() })
            .await
            .is_some(),
        "both notifications were sent"
    );
    let sent = notifications.server.requests();
    for (template, trace) in [
        ("password-reset", RESET_TRACE),
        ("email-verification", REGISTER_TRACE),
    ] {
        let notification = sent
            .iter()
            .find(|request| template_of(request).as_deref() == Some(template))
            .expect("sent");
        assert_eq!(
            notification.header("traceparent").map(trace_id),
            Some(trace),
            "{template}"
        );
    }
    // The token was fetched for the first delivery, in the registration's trace.
    let token_request = &tokens.server.requests()[0];
    assert_eq!(
        token_request.header("traceparent").map(trace_id),
        Some(REGISTER_TRACE)
    );

    // Plugin egress: Pwned Passwords never gets a trace; the opted-in destination does.
    let range_calls = hibp.server.requests();
    assert!(!range_calls.is_empty(), "the breach check ran");
    assert!(
        range_calls
            .iter()
            .all(|request| request.header("traceparent").is_none()
                && request.header("tracestate").is_none()),
        "no trace context to Pwned Passwords"
    );
    let siteverify = turnstile.server.requests();
    assert_eq!(
        siteverify[0].header("traceparent").map(trace_id),
        Some(REGISTER_TRACE)
    );
}
