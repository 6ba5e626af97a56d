//! The bridge from `wasi:http` to the gateway: wasmtime-wasi-http calls
//! [`WasiHttpHooks::send_request`] for every outgoing request a plugin makes.

use crate::egress_calls::{EgressCall, EgressCalls};
use egress::{
    CallerPolicy, EgressError, EgressGateway, TimeoutOverrides, client::AttemptError, trace,
};
use http_body_util::{BodyExt, Full, Limited};
use std::{future::Future, sync::Arc, time::Instant};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

/// The hooks of one decision's store: which plugin is asking, and by when it must be done.
pub struct EgressHooks {
    /// `None` for plugin kinds without network access: every request is denied.
    route: Option<(Arc<EgressGateway>, Arc<CallerPolicy>)>,
    deadline: Instant,
    /// The trace of the request the decision serves ([`trace::TRACEPARENT`] when the
    /// store was made), sent only to destinations that opt in.
    traceparent: Option<String>,
    /// The egress calls of the decision this store serves ([`crate::egress_calls::collect`]),
    /// for its decision-log line.
    calls: Option<EgressCalls>,
}

impl EgressHooks {
    /// Hooks that route through `gateway` with `egress`'s allowlist.
    pub fn new(gateway: Arc<EgressGateway>, egress: Arc<CallerPolicy>, deadline: Instant) -> Self {
        Self {
            route: Some((gateway, egress)),
            deadline,
            traceparent: trace::current(),
            calls: crate::egress_calls::current(),
        }
    }

    /// Hooks that deny everything.
    pub fn deny_all(deadline: Instant) -> Self {
        Self {
            route: None,
            deadline,
            traceparent: None,
            calls: crate::egress_calls::current(),
        }
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

impl WasiHttpHooks for EgressHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _body_result: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let route = self.route.clone();
        let deadline = self.deadline;
        let traceparent = self.traceparent.clone();
        let calls = self.calls.clone();
        Box::new(async move {
            let Some((gateway, egress)) = route else {
                if let Some(calls) = &calls {
                    calls.record(EgressCall::new(
                        request.method(),
                        request.uri(),
                        None,
                        Err("denied"),
                        false,
                        std::time::Duration::ZERO,
                    ));
                }
                return Err(HttpError::HttpRequestDenied);
            };
            let limit = gateway.config().max_request_bytes;
            let (mut parts, body) = request.into_parts();
            let destinations = &gateway.config().trace_context_destinations;
            // The URL is spelled out only when a trace could go with it.
            let url = if traceparent.is_some() && !destinations.is_empty() {
                parts.uri.to_string()
            } else {
                String::new()
            };
            trace::apply(
                &mut parts.headers,
                &url,
                destinations,
                traceparent.as_deref(),
            );
            let body = Limited::new(body, limit)
                .collect()
                .await
                .map_err(|_| HttpError::HttpRequestBodySize(None))?
                .to_bytes();
            let (method, uri) = (parts.method.clone(), parts.uri.clone());
            let started = Instant::now();
            let (response, cached) = egress::cache::observe_cache(gateway.send(
                &egress,
                http::Request::from_parts(parts, body),
                options.map(overrides),
                deadline,
            ))
            .await;
            if let Some(calls) = &calls {
                calls.record(EgressCall::new(
                    &method,
                    &uri,
                    egress.rule_for(&uri),
                    response
                        .as_ref()
                        .map(|response| response.status)
                        .map_err(crate::egress_calls::error_kind),
                    cached,
                    started.elapsed(),
                ));
            }
            let response = response.map_err(to_wasi_error)?;
            let mut builder = http::Response::builder().status(response.status);
            if let Some(headers) = builder.headers_mut() {
                *headers = response.headers;
            }
            let body: WasiBody = Full::new(response.body)
                .map_err(|never: std::convert::Infallible| match never {})
                .boxed_unsync();
            let response = builder
                .body(body)
                .map_err(|error| HttpError::InternalError(Some(error.to_string())))?;
            let done: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, done))
        })
    }
}

/// A guest's `request-options` as the gateway takes them: timeouts it may only shorten.
fn overrides(options: RequestOptions) -> TimeoutOverrides {
    TimeoutOverrides {
        connect: options.connect_timeout,
        first_byte: options.first_byte_timeout,
        between_bytes: options.between_bytes_timeout,
    }
}

/// The `wasi:http` error code a plugin sees for each gateway failure.
fn to_wasi_error(error: EgressError) -> HttpError {
    match error {
        EgressError::Denied(_) => HttpError::HttpRequestDenied,
        EgressError::AddressRefused(_) => HttpError::DestinationIpProhibited,
        EgressError::Resolve(_) => HttpError::DestinationNotFound,
        EgressError::BreakerOpen { .. } => HttpError::DestinationUnavailable,
        EgressError::RequestTooLarge { limit } => {
            HttpError::HttpRequestBodySize(Some(limit as u64))
        }
        EgressError::DeadlineExceeded => HttpError::HttpResponseTimeout,
        EgressError::ContentEncoded { encoding } => {
            HttpError::HttpResponseContentCoding(Some(encoding))
        }
        EgressError::Attempt(error) => match error {
            AttemptError::Connect(_) => HttpError::ConnectionRefused,
            AttemptError::ConnectTimeout => HttpError::ConnectionTimeout,
            AttemptError::Tls(_) => HttpError::TlsProtocolError,
            AttemptError::FirstByteTimeout => HttpError::HttpResponseTimeout,
            AttemptError::BetweenBytesTimeout => HttpError::ConnectionReadTimeout,
            AttemptError::ResponseTooLarge { limit } => {
                HttpError::HttpResponseBodySize(Some(limit as u64))
            }
            AttemptError::Protocol(_) => HttpError::HttpResponseIncomplete,
        },
    }
}
