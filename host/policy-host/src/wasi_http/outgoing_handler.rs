//! `wasi:http/outgoing-handler` for plugins, answering inline whenever the gateway can.
//!
//! wasmtime-wasi-http's own `handle` always spawns a task for the response (and a second for
//! its I/O), so even a response the gateway has in its cache costs the guest a suspension of
//! its fiber, two task spawns and a cross-task wake-up. Here the gateway's future is polled
//! once in place: a cache hit, an allowlist refusal or an open breaker is answered there and
//! then (the future-incoming-response is born ready); only a request that must wait for the
//! network is spawned, exactly as upstream does. The request goes through the same
//! [`EgressHooks::send_request`] either way, so every gateway rule applies unchanged.

use super::hooks::EgressHooks;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};
use wasmtime::{
    StoreContextMut,
    component::{Linker, Resource, ResourceTable},
};
use wasmtime_wasi::runtime::{AbortOnDropJoinHandle, spawn};
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiHttpHooks,
    p2::{
        HttpResult,
        bindings::http::types::{ErrorCode, Method, Scheme},
        http_request_error,
        types::{HostFutureIncomingResponse, HostOutgoingRequest},
    },
};

/// The `wasi:http` interface this module defines (the version wasmtime-wasi-http links; the
/// linker satisfies any 0.2.x import with it).
const OUTGOING_HANDLER: &str = "wasi:http/outgoing-handler@0.2.12";

/// What `handle` needs of a decision's store: its resources and its egress hooks.
pub struct GatewayOutgoing<'a> {
    /// The store's resource table: the guest's request and options come out of it, the
    /// future-incoming-response goes into it.
    pub table: &'a mut ResourceTable,
    /// The hooks that send the request through the egress gateway.
    pub hooks: &'a mut EgressHooks,
}

/// The response and the task that keeps its I/O alive, as wasmtime-wasi-http stores them.
type SendResult = Result<
    (
        http::Response<wasmtime_wasi_http::p2::body::HyperIncomingBody>,
        AbortOnDropJoinHandle<()>,
    ),
    HttpError,
>;

/// What [`EgressHooks::send_request`]'s future gives: the response and its I/O future.
type HookResult = Result<
    (
        http::Response<wasmtime_wasi_http::WasiBody>,
        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ),
    HttpError,
>;

/// Defines `wasi:http/outgoing-handler.handle` in `linker` (in place of wasmtime-wasi-http's
/// definition; its `wasi:http/types` stay as they are).
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> GatewayOutgoing<'_>,
) -> wasmtime::Result<()> {
    let mut instance = linker.instance(OUTGOING_HANDLER)?;
    instance.func_wrap(
        "handle",
        move |mut store: StoreContextMut<'_, T>,
              (request, options): (
            Resource<HostOutgoingRequest>,
            Option<Resource<RequestOptions>>,
        )| {
            let result = match view(store.data_mut()).handle(request, options) {
                Ok(response) => Ok(response),
                // An error code goes back to the guest; anything else traps.
                Err(error) => Err(error.downcast()?),
            };
            Ok((result,))
        },
    )?;
    Ok(())
}

impl GatewayOutgoing<'_> {
    fn handle(
        &mut self,
        request_id: Resource<HostOutgoingRequest>,
        options: Option<Resource<RequestOptions>>,
    ) -> HttpResult<Resource<HostFutureIncomingResponse>> {
        let options = options.and_then(|id| self.table.get(&id).ok()).copied();
        let request = self.table.delete(request_id)?;
        let request = to_http_request(request)?;
        let mut future = Box::into_pin(self.hooks.send_request(
            request,
            options,
            Box::new(async { Ok(()) }),
        ));
        // One poll with a no-op waker: the gateway's synchronous answers (cache hits,
        // refusals, an open breaker) come back here; anything else is spawned and polled again
        // with a real waker, which every future must allow.
        let response = match future
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(result) => HostFutureIncomingResponse::Ready(with_io_task(result)),
            Poll::Pending => {
                HostFutureIncomingResponse::Pending(spawn(
                    async move { with_io_task(future.await) },
                ))
            }
        };
        Ok(self.table.push(response)?)
    }
}

/// The gateway's answer with its I/O future running in a task of its own, as upstream keeps it.
fn with_io_task(result: HookResult) -> SendResult {
    let (response, io) = result?;
    let io = spawn(async move {
        if let Err(error) = Pin::from(io).await {
            tracing::debug!(%error, "plugin response I/O ended with an error");
        }
    });
    Ok((response.map(BodyExt::boxed_unsync), io))
}

/// The guest's request as an `http::Request`, checked the way wasmtime-wasi-http checks it.
fn to_http_request(
    request: HostOutgoingRequest,
) -> HttpResult<http::Request<wasmtime_wasi_http::WasiBody>> {
    let content_length = request
        .headers
        .get(http::header::CONTENT_LENGTH)
        .map(|value| {
            value
                .to_str()
                .ok()
                .filter(|text| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()))
                .and_then(|text| text.parse::<u64>().ok())
                .ok_or(ErrorCode::HttpRequestHeaderSize(None))
        })
        .transpose()?;
    if request.body.is_none() && content_length.is_some_and(|length| length != 0) {
        return Err(ErrorCode::HttpRequestBodySize(Some(0)).into());
    }
    let method = match request.method {
        Method::Get => http::Method::GET,
        Method::Head => http::Method::HEAD,
        Method::Post => http::Method::POST,
        Method::Put => http::Method::PUT,
        Method::Delete => http::Method::DELETE,
        Method::Connect => http::Method::CONNECT,
        Method::Options => http::Method::OPTIONS,
        Method::Trace => http::Method::TRACE,
        Method::Patch => http::Method::PATCH,
        Method::Other(other) => http::Method::from_bytes(other.as_bytes())
            .map_err(|_| ErrorCode::HttpRequestMethodInvalid)?,
    };
    // Only http and https; a guest that names no scheme gets https, as upstream's default.
    let scheme = match request.scheme {
        Some(Scheme::Http) => http::uri::Scheme::HTTP,
        Some(Scheme::Https) | None => http::uri::Scheme::HTTPS,
        Some(Scheme::Other(_)) => return Err(ErrorCode::HttpProtocolError.into()),
    };
    let authority = request.authority.unwrap_or_default();
    let mut uri = http::Uri::builder()
        .scheme(scheme)
        .authority(authority.as_str());
    if let Some(path) = request.path_with_query {
        uri = uri.path_and_query(path);
    }
    let mut builder = http::Request::builder()
        .method(method)
        .uri(uri.build().map_err(http_request_error)?)
        .header(http::header::HOST, authority.as_str());
    for (name, value) in request.headers.iter() {
        builder = builder.header(name, value);
    }
    let body = request.body.unwrap_or_else(|| {
        Empty::<Bytes>::new()
            .map_err(|never: std::convert::Infallible| match never {})
            .boxed_unsync()
    });
    builder
        .body(body)
        .map_err(|error| ErrorCode::InternalError(Some(error.to_string())).into())
}
