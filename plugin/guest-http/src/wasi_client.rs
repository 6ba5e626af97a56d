//! The wasm side: `wasi:http/outgoing-handler` driven to completion.

use super::{Request, Response};

// A world of its own (just the import), so linking this crate into any plugin adds nothing
// but `wasi:http` to that plugin's world.
wit_bindgen::generate!({
    inline: "package local:guest-http; world client { import wasi:http/outgoing-handler@0.2.12; }",
    path: "../../wit",
    world: "local:guest-http/client",
    generate_all,
});

use wasi::{
    http::{
        outgoing_handler,
        types::{
            Fields, IncomingBody, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
        },
    },
    io::streams::{InputStream, StreamError},
};

/// Sends `request` and reads the whole response. Errors are `wasi:http` error codes (or a short
/// description), suitable for an `unknown` reason; they never contain request data.
pub fn send(request: Request<'_>) -> Result<Response, String> {
    // One call for all the fields, not one per header.
    let entries: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.to_vec()))
        .collect();
    let fields =
        Fields::from_list(&entries).map_err(|error| format!("request headers: {error:?}"))?;
    let outgoing = OutgoingRequest::new(fields);
    let method = match request.method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "HEAD" => Method::Head,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_owned()),
    };
    outgoing
        .set_method(&method)
        .map_err(|()| "invalid method".to_owned())?;
    let scheme = if request.target.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| "invalid scheme".to_owned())?;
    outgoing
        .set_authority(Some(&request.target.authority))
        .map_err(|()| "invalid authority".to_owned())?;
    outgoing
        .set_path_with_query(Some(&request.target.path_with_query))
        .map_err(|()| "invalid path".to_owned())?;

    let body = outgoing
        .body()
        .map_err(|()| "request body unavailable".to_owned())?;
    if let Some(bytes) = request.body {
        let stream = body
            .write()
            .map_err(|()| "request body stream unavailable".to_owned())?;
        for chunk in bytes.chunks(4096) {
            stream
                .blocking_write_and_flush(chunk)
                .map_err(|error| format!("writing request body: {error:?}"))?;
        }
    }
    OutgoingBody::finish(body, None).map_err(|error| format!("{error:?}"))?;

    let options = RequestOptions::new();
    if let Some(ms) = request.timeout_ms {
        let nanos = ms.saturating_mul(1_000_000);
        let _ = options.set_first_byte_timeout(Some(nanos));
        let _ = options.set_between_bytes_timeout(Some(nanos));
    }
    let pending =
        outgoing_handler::handle(outgoing, Some(options)).map_err(|code| format!("{code:?}"))?;
    // A response the host already has (a cached answer) needs no pollable: ask first.
    let response = match pending.get() {
        Some(response) => response,
        None => {
            pending.subscribe().block();
            pending.get().ok_or("no response after waiting")?
        }
    };
    let response = response
        .map_err(|()| "response already taken".to_owned())?
        .map_err(|code| format!("{code:?}"))?;

    let status = response.status();
    let headers = if request.read_headers {
        response.headers().entries()
    } else {
        Vec::new()
    };
    let incoming = response
        .consume()
        .map_err(|()| "response body unavailable".to_owned())?;
    let stream = incoming
        .stream()
        .map_err(|()| "response body stream unavailable".to_owned())?;
    let body = read_to_end(&stream, request.max_body_bytes)?;
    drop(stream);
    let _ = IncomingBody::finish(incoming);
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Reads `stream` to its end, refusing more than `max_bytes`.
///
/// Each read asks for everything the limit still allows: the host answers with what it has
/// (a buffered response is one chunk), so a typical body costs one read and no copy here.
fn read_to_end(stream: &InputStream, max_bytes: usize) -> Result<Vec<u8>, String> {
    let mut body: Vec<u8> = Vec::new();
    loop {
        // One byte past the limit, so a body that overflows it is seen.
        let room = (max_bytes - body.len()).saturating_add(1);
        match stream.blocking_read(u64::try_from(room).unwrap_or(u64::MAX)) {
            Ok(chunk) => {
                if body.len() + chunk.len() > max_bytes {
                    return Err(format!("response body larger than {max_bytes} bytes"));
                }
                if body.is_empty() {
                    body = chunk;
                } else {
                    body.extend_from_slice(&chunk);
                }
            }
            Err(StreamError::Closed) => return Ok(body),
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(format!(
                    "reading response body: {}",
                    error.to_debug_string()
                ));
            }
        }
    }
}
