//! Optional OTLP export of spans (`[telemetry] otlp-endpoint`): off unless an endpoint is
//! configured. When on, the `tracing` spans (the `request` span of each request and the spans
//! inside it) are exported as OpenTelemetry spans over OTLP/HTTP (protobuf) by a batch
//! processor. A request's spans belong to the request's W3C trace (the trace id of the
//! `traceparent` the service logs, answers and stores with its events; see
//! [`crate::trace_context`]).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use serde::Deserialize;
use tracing::Subscriber;
use tracing_subscriber::registry::LookupSpan;

/// `[telemetry]`: where spans go, if anywhere.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (`otlp-endpoint`, e.g. `http://127.0.0.1:4318`;
    /// spans are POSTed to `<endpoint>/v1/traces`). Without one nothing is exported.
    #[serde(rename = "otlp-endpoint")]
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute (`service-name`; default `user-service`).
    #[serde(rename = "service-name")]
    pub service_name: Option<String>,
}

/// The layer exporting spans, and the provider to flush or shut down at exit; `None` when no
/// endpoint is configured.
pub fn otlp_layer<S>(
    config: &TelemetryConfig,
) -> anyhow::Result<
    Option<(
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::SdkTracer>,
        SdkTracerProvider,
    )>,
>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let Some(endpoint) = config.otlp_endpoint.as_deref() else {
        return Ok(None);
    };
    let endpoint = traces_url(endpoint);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .build()
        .map_err(|error| anyhow::anyhow!("OTLP exporter: {error}"))?;
    let name = config
        .service_name
        .clone()
        .unwrap_or_else(|| "user-service".to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(name).build())
        .build();
    let tracer = provider.tracer("user-service");
    Ok(Some((
        tracing_opentelemetry::layer().with_tracer(tracer),
        provider,
    )))
}

/// `<endpoint>/v1/traces`, unless the endpoint already names that path.
fn traces_url(endpoint: &str) -> String {
    let endpoint = endpoint.trim_end_matches('/');
    if endpoint.ends_with("/v1/traces") {
        endpoint.to_owned()
    } else {
        format!("{endpoint}/v1/traces")
    }
}

/// Makes `span` (not yet entered) a span of `context`'s trace: its parent is the caller's
/// span when the request continued a trace, else the span the `traceparent` names. Does
/// nothing when no OpenTelemetry layer is installed.
pub fn join_trace(span: &tracing::Span, context: &crate::trace_context::TraceContext) {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    let parent = context
        .parent_span_id
        .as_deref()
        .unwrap_or(&context.span_id);
    let (Ok(trace_id), Ok(span_id)) = (
        TraceId::from_hex(&context.trace_id),
        SpanId::from_hex(parent),
    ) else {
        return;
    };
    let remote = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(context.flags),
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_appended_once() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318"),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/v1/traces"),
            "http://collector:4318/v1/traces"
        );
    }

    #[test]
    fn off_without_an_endpoint() {
        let layer = otlp_layer::<tracing_subscriber::Registry>(&TelemetryConfig::default());
        assert!(layer.unwrap().is_none());
    }
}
