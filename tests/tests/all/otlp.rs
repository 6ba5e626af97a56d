//! Optional OTLP export of spans: with `[telemetry] otlp-endpoint` set, the service's spans reach
//! a local OTLP/HTTP endpoint, which decodes them with the OpenTelemetry protobuf definitions
//! (`ExportTraceServiceRequest`). A request's spans carry the trace id of its `traceparent`,
//! the one its event stores; another request's spans carry another.
//!
//! The test runs in a process of its own (`harness::process::own_process`): it installs the global `tracing` subscriber (once) with the
//! layer `user_service::telemetry::otlp_layer` builds, as `main` does.

use harness::{
    hibp::HibpServer,
    service::TestService,
    upstream::{Reply, TestServer},
    wait_until,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};
use user_service::telemetry::{TelemetryConfig, otlp_layer};

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// One received span: (trace id, span id, parent span id, name), ids in hex.
type ReceivedSpan = (String, String, String, String);

/// A local OTLP/HTTP collector: `POST /v1/traces` with an `application/x-protobuf` body.
async fn collector() -> (
    TestServer,
    Arc<Mutex<Vec<ReceivedSpan>>>,
    Arc<Mutex<Vec<String>>>,
) {
    let spans = Arc::new(Mutex::new(Vec::new()));
    let services = Arc::new(Mutex::new(Vec::new()));
    let (received, names) = (spans.clone(), services.clone());
    let server = TestServer::start(move |request| {
        let protobuf = request.headers.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case("content-type") && value == "application/x-protobuf"
        });
        if request.method != "POST" || request.path != "/v1/traces" || !protobuf {
            return Reply::status(404);
        }
        let Ok(export) = ExportTraceServiceRequest::decode(request.body.as_slice()) else {
            return Reply::status(400);
        };
        for resource in export.resource_spans {
            for attribute in resource.resource.iter().flat_map(|r| r.attributes.iter()) {
                if attribute.key == "service.name" {
                    names.lock().unwrap().push(format!("{:?}", attribute.value));
                }
            }
            for scope in resource.scope_spans {
                for span in scope.spans {
                    received.lock().unwrap().push((
                        hex::encode(&span.trace_id),
                        hex::encode(&span.span_id),
                        hex::encode(&span.parent_span_id),
                        span.name,
                    ));
                }
            }
        }
        Reply::Respond {
            status: 200,
            headers: vec![("content-type".into(), "application/x-protobuf".into())],
            body: Vec::new(),
        }
    })
    .await;
    (server, spans, services)
}

fn trace_id(traceparent: &str) -> &str {
    traceparent.split('-').nth(1).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requests_spans_share_the_trace_id_of_its_event() {
    if !harness::process::own_process(
        module_path!(),
        "a_requests_spans_share_the_trace_id_of_its_event",
    ) {
        return;
    }
    let (collector, spans, services) = collector().await;
    let (layer, provider) = otlp_layer(&TelemetryConfig {
        otlp_endpoint: Some(collector.url()),
        service_name: Some("user-service-otlp-test".to_owned()),
    })
    .unwrap()
    .expect("an endpoint turns export on");
    tracing_subscriber::registry()
        .with(layer)
        .with(tracing_subscriber::EnvFilter::new("info"))
        .init();

    let hibp = HibpServer::start(&[]).await;
    let service = TestService::start(&hibp.server.url(), None, |_| {})
        .await
        .unwrap();
    let client = Client::new();
    let response = client
        .post(service.url("/v1/users"))
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .json(&json!({ "email": "ana@example.org", "password": "correct horse battery staple" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    // Another request, without a traceparent: a trace of its own.
    let other = client
        .post(service.url("/v1/users"))
        .json(&json!({ "email": "bo@example.org", "password": "another fine passphrase here" }))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::CREATED);
    let other_trace = trace_id(other.headers()["traceparent"].to_str().unwrap()).to_owned();
    assert_ne!(other_trace, TRACE);

    let events: Vec<Value> = service.delivered_events().await;
    let event = events
        .iter()
        .find(|event| event["data"]["email"] == "ana@example.org")
        .unwrap_or_else(|| panic!("ana's registration event among {events:#?}"));
    let event_trace = trace_id(event["traceparent"].as_str().expect("a traceparent")).to_owned();
    assert_eq!(event_trace, TRACE, "the event carries the request's trace");

    // The batch processor exports on its own thread; flush it without blocking the runtime
    // that serves the collector.
    let flushing = provider.clone();
    tokio::task::spawn_blocking(move || flushing.force_flush())
        .await
        .unwrap()
        .unwrap();
    let exported = wait_until(Duration::from_secs(10), || async {
        let spans = spans.lock().unwrap();
        [&event_trace, &other_trace]
            .iter()
            .all(|trace| spans.iter().any(|span| &span.0 == *trace))
    })
    .await;
    let spans = spans.lock().unwrap().clone();
    assert!(
        exported.is_some(),
        "spans of both requests reach the collector: {spans:#?}"
    );
    let request_span = spans
        .iter()
        .find(|span| span.0 == event_trace && span.3 == "request")
        .unwrap_or_else(|| panic!("the request span in the event's trace among {spans:#?}"));
    assert_eq!(
        request_span.2, CALLER_SPAN,
        "the request span is a child of the caller's span"
    );
    assert!(
        spans
            .iter()
            .filter(|span| span.0 == other_trace)
            .all(|span| span.0 != event_trace),
        "the other request's spans are in another trace"
    );
    assert!(
        services
            .lock()
            .unwrap()
            .iter()
            .any(|name| name.contains("user-service-otlp-test")),
        "the resource names the service"
    );
    drop(service);
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
}
