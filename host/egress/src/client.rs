//! One attempt to already-checked addresses: a pooled connection (an idle HTTP/1.1 one, or
//! the shared HTTP/2 one) or a new one (connect, TLS offering `h2` and `http/1.1` by ALPN),
//! send, read a bounded body, each step under its own timeout.

use crate::{
    cache::BufferedResponse,
    pool::{Connection, ConnectionPool, PoolKey, Pooled, Protocol, SharedConnection},
    tls::ALPN_H2,
};
use bytes::{Bytes, BytesMut};
use http::{
    HeaderMap, Request, Response,
    header::{CONNECTION, HOST, TE, TRANSFER_ENCODING, UPGRADE},
};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::TcpStream,
    time::timeout,
};

/// Timeouts of one attempt, already clamped to the decision's remaining time.
#[derive(Debug, Clone, Copy)]
pub struct AttemptTimeouts {
    /// For each TCP connect, and again for the TLS handshake.
    pub connect: Duration,
    /// From sending the request to the response head.
    pub first_byte: Duration,
    /// The longest wait for the next chunk of the response body.
    pub between_bytes: Duration,
}

/// How an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// Nothing was sent: safe to retry whatever the method.
    Connect(String),
    /// A TCP connect or the TLS handshake took longer than the connect timeout.
    ConnectTimeout,
    /// The server name was not valid for TLS, or the handshake failed.
    Tls(String),
    /// No response head within the first-byte timeout (or the decision's time ran out).
    FirstByteTimeout,
    /// The response body stalled longer than the between-bytes timeout.
    BetweenBytesTimeout,
    /// The response body went past the destination's size limit.
    ResponseTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The connection broke after the request went out (reset mid-body, bad framing...).
    Protocol(String),
}

impl AttemptError {
    /// True when the request never reached the upstream.
    pub fn nothing_sent(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::ConnectTimeout | Self::Tls(_))
    }

    /// A short stable name of the failure kind, for metrics and log keys.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::ConnectTimeout => "connect-timeout",
            Self::Tls(_) => "tls",
            Self::FirstByteTimeout => "first-byte-timeout",
            Self::BetweenBytesTimeout => "between-bytes-timeout",
            Self::ResponseTooLarge { .. } => "response-too-large",
            Self::Protocol(_) => "protocol",
        }
    }

    /// True for failures another attempt might not have (everything but an oversized body).
    pub fn is_transient(&self) -> bool {
        !matches!(self, Self::ResponseTooLarge { .. })
    }
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "connection failed: {error}"),
            Self::ConnectTimeout => f.write_str("connection timed out"),
            Self::Tls(error) => write!(f, "TLS handshake failed: {error}"),
            Self::FirstByteTimeout => f.write_str("no response before the first-byte timeout"),
            Self::BetweenBytesTimeout => {
                f.write_str("response body stalled past the between-bytes timeout")
            }
            Self::ResponseTooLarge { limit } => {
                write!(f, "response body larger than {limit} bytes")
            }
            Self::Protocol(error) => write!(f, "connection broke: {error}"),
        }
    }
}

impl std::error::Error for AttemptError {}

/// Everything one attempt needs.
pub struct Attempt<'a> {
    /// Speak TLS (an `https` destination).
    pub use_tls: bool,
    /// The destination's host: the TLS server name and part of the pool key.
    pub host: &'a str,
    /// The checked addresses to connect to, tried in order.
    pub addresses: &'a [SocketAddr],
    /// The canonical request with its absolute URI; sent in origin form with a `Host` header
    /// over HTTP/1.1, with `:authority` over HTTP/2.
    pub request: Request<Bytes>,
    /// The attempt's timeouts.
    pub timeouts: AttemptTimeouts,
    /// The largest response body accepted, in bytes.
    pub max_response_bytes: usize,
    /// The TLS client configuration (trusted roots, protocol versions, ALPN).
    pub tls: &'a Arc<rustls::ClientConfig>,
    /// Where connections are taken from and given back.
    pub pool: &'a ConnectionPool,
}

/// How many times one attempt may hand its request to a connection that turns out not to take
/// it (closed under it, or an HTTP/2 stream refused unprocessed) before giving up.
const SENDS: usize = 3;

/// Makes one attempt: on a pooled connection to one of the checked addresses when there is
/// one, else on a new connection, which is pooled (HTTP/1.1, when the response allows it) or
/// shared at once (HTTP/2). A request that a connection did not take (a stale pooled one, an
/// HTTP/2 stream refused before the server's settings arrived, or left unprocessed by a
/// GOAWAY) goes out again: on the still usable shared connection, else on a fresh one.
pub async fn send_once(attempt: Attempt<'_>) -> Result<BufferedResponse, AttemptError> {
    for round in 0..SENDS {
        // The request is cloned cheaply (the body is shared) in case it is not taken.
        match send_on_a_connection(&attempt, attempt.request.clone(), round == 0).await {
            Err(Exchange::NotSent) => {}
            Err(Exchange::Failed(error)) => return Err(error),
            Ok(response) => return Ok(response),
        }
    }
    Err(AttemptError::Protocol(format!(
        "no connection took the request in {SENDS} tries"
    )))
}

/// One hand-over of `request`: to an idle HTTP/1.1 connection (only when `idle_allowed`: a
/// second round goes to a fresh one) or the shared HTTP/2 one, else to a new connection.
async fn send_on_a_connection(
    attempt: &Attempt<'_>,
    request: Request<Bytes>,
    idle_allowed: bool,
) -> Result<BufferedResponse, Exchange> {
    let key_for = |address: SocketAddr| PoolKey {
        tls: attempt.use_tls,
        host: attempt.host.to_owned(),
        address,
    };
    let (timeouts, max_bytes, pool) = (attempt.timeouts, attempt.max_response_bytes, attempt.pool);
    for address in attempt.addresses {
        let key = key_for(*address);
        let pooled = if idle_allowed {
            pool.checkout(&key)
        } else {
            pool.checkout_shared(&key).map(Pooled::Shared)
        };
        if let Some(pooled) = pooled {
            return exchange_pooled(pool, key, pooled, request, timeouts, max_bytes).await;
        }
    }
    let first = attempt
        .addresses
        .first()
        .ok_or_else(|| Exchange::Failed(AttemptError::Connect("no address".to_owned())))?;
    // Concurrent first requests to a TLS upstream wait for one another's connection, which
    // may turn out to be HTTP/2 and shared; a wait that lasts past the connect timeout gives
    // up and connects alone.
    let gate = pool.connect_gate(&key_for(*first));
    let turn = match &gate {
        Some(gate) => timeout(timeouts.connect, gate.clone().lock_owned())
            .await
            .ok(),
        None => None,
    };
    if gate.is_some() {
        for address in attempt.addresses {
            let key = key_for(*address);
            if let Some(shared) = pool.checkout_shared(&key) {
                drop(turn);
                let pooled = Pooled::Shared(shared);
                return exchange_pooled(pool, key, pooled, request, timeouts, max_bytes).await;
            }
        }
    }
    let (address, fresh) = open(
        attempt.host,
        attempt.addresses,
        attempt.use_tls,
        attempt.tls,
        timeouts.connect,
    )
    .await
    .map_err(Exchange::Failed)?;
    let key = key_for(address);
    match &fresh {
        Pooled::Shared(shared) => pool.share(key.clone(), shared.clone()),
        Pooled::Exclusive(_) if attempt.use_tls => pool.learned_http1(key.clone()),
        Pooled::Exclusive(_) => {}
    }
    drop(turn);
    exchange_pooled(pool, key, fresh, request, timeouts, max_bytes).await
}

/// Sends `request` on `connection` (for `key`): an HTTP/1.1 one is given back to the pool
/// when it can carry another request; an HTTP/2 one that did not take the request and can no
/// longer send (closed, GOAWAY) is no longer shared.
async fn exchange_pooled(
    pool: &ConnectionPool,
    key: PoolKey,
    connection: Pooled,
    request: Request<Bytes>,
    timeouts: AttemptTimeouts,
    max_bytes: usize,
) -> Result<BufferedResponse, Exchange> {
    match connection {
        Pooled::Exclusive(connection) => {
            let (response, reusable) =
                exchange_http1(connection, request, timeouts, max_bytes).await?;
            if let Some(connection) = reusable {
                pool.checkin(key, connection);
            }
            Ok(response)
        }
        Pooled::Shared(mut connection) => {
            let sent = connection.sender.try_send_request(to_http2_form(request));
            let outcome = read_response(sent, timeouts, max_bytes).await;
            if matches!(outcome, Err(Exchange::NotSent)) && !connection.usable() {
                pool.forget(&key, &connection);
            }
            outcome
        }
    }
}

async fn connect(
    addresses: &[SocketAddr],
    limit: Duration,
) -> Result<(SocketAddr, TcpStream), AttemptError> {
    let mut last = AttemptError::Connect("no address".to_owned());
    for address in addresses {
        match timeout(limit, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok((*address, stream));
            }
            Ok(Err(error)) => last = AttemptError::Connect(format!("{address}: {error}")),
            Err(_) => last = AttemptError::ConnectTimeout,
        }
    }
    Err(last)
}

/// A new connection to the first of `addresses` that accepts: TCP, then for `use_tls` the TLS
/// handshake offering `h2` and `http/1.1`, then the handshake of the protocol the upstream
/// chose. Counted in `egress_connections_opened_total{protocol}`.
async fn open(
    host: &str,
    addresses: &[SocketAddr],
    use_tls: bool,
    tls: &Arc<rustls::ClientConfig>,
    limit: Duration,
) -> Result<(SocketAddr, Pooled), AttemptError> {
    let (address, stream) = connect(addresses, limit).await?;
    let connection = if use_tls {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|error| AttemptError::Tls(error.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(tls.clone());
        let stream = timeout(limit, connector.connect(name, stream))
            .await
            .map_err(|_| AttemptError::ConnectTimeout)?
            .map_err(|error| AttemptError::Tls(error.to_string()))?;
        if stream.get_ref().1.alpn_protocol() == Some(ALPN_H2) {
            Pooled::Shared(handshake_http2(stream, limit).await?)
        } else {
            Pooled::Exclusive(handshake_http1(stream).await?)
        }
    } else {
        Pooled::Exclusive(handshake_http1(stream).await?)
    };
    let protocol = match connection {
        Pooled::Exclusive(_) => Protocol::Http1,
        Pooled::Shared(_) => Protocol::Http2,
    };
    metrics::counter!("egress_connections_opened_total", "protocol" => protocol.label())
        .increment(1);
    Ok((address, connection))
}

/// The HTTP/1.1 handshake on a fresh stream, with a task driving the connection.
async fn handshake_http1<S>(stream: S) -> Result<Connection, AttemptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| AttemptError::Protocol(error.to_string()))?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Connection::new(sender, task))
}

/// The HTTP/2 handshake (preface and settings) on a fresh TLS stream, within `limit`, with a
/// task driving the connection for every request that shares it.
async fn handshake_http2<S>(stream: S, limit: Duration) -> Result<SharedConnection, AttemptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .handshake(TokioIo::new(stream));
    let (sender, connection) = timeout(limit, handshake)
        .await
        .map_err(|_| AttemptError::ConnectTimeout)?
        .map_err(|error| AttemptError::Protocol(error.to_string()))?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(SharedConnection::new(sender, task))
}

/// How an exchange on a connection failed.
enum Exchange {
    /// The connection was closed (or, over HTTP/2, going away) before the request was
    /// written: it can go out elsewhere.
    NotSent,
    Failed(AttemptError),
}

/// Sends `request` on an HTTP/1.1 `connection` and reads a bounded body. Gives the connection
/// back when it can carry another request (the body was read to its end and nobody asked to
/// close).
async fn exchange_http1(
    mut connection: Connection,
    request: Request<Bytes>,
    timeouts: AttemptTimeouts,
    max_bytes: usize,
) -> Result<(BufferedResponse, Option<Connection>), Exchange> {
    let wants_close = closes(request.headers());
    // A connection just back in the pool may not have finished the previous exchange in its
    // own task yet: sending now would be refused and cost a new connection. Wait until it asks
    // for the next request (at once when idle); one that closed instead sent nothing.
    if !matches!(
        timeout(timeouts.connect, connection.sender.ready()).await,
        Ok(Ok(()))
    ) {
        return Err(Exchange::NotSent);
    }
    let sent = connection.sender.try_send_request(to_origin_form(request));
    let response = read_response(sent, timeouts, max_bytes).await?;
    let closing = wants_close || closes(&response.headers);
    Ok((response, (!closing).then_some(connection)))
}

fn closes(headers: &HeaderMap) -> bool {
    headers
        .get(CONNECTION)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"))
}

/// Waits for the response head of `sent` within the first-byte timeout, then reads the body
/// chunk by chunk within the between-bytes timeout, refusing more than `max_bytes`. Dropping
/// the response early (a timeout, the size limit) resets an HTTP/2 stream and closes an
/// HTTP/1.1 connection; the other streams of an HTTP/2 connection go on.
async fn read_response<F>(
    sent: F,
    timeouts: AttemptTimeouts,
    max_bytes: usize,
) -> Result<BufferedResponse, Exchange>
where
    F: Future<
        Output = Result<
            Response<Incoming>,
            hyper::client::conn::TrySendError<Request<Full<Bytes>>>,
        >,
    >,
{
    let failed = Exchange::Failed;
    let response = match timeout(timeouts.first_byte, sent).await {
        Err(_) => return Err(failed(AttemptError::FirstByteTimeout)),
        Ok(Ok(response)) => response,
        Ok(Err(mut error)) => {
            let unsent = error.take_message().is_some();
            let error = error.into_error();
            return Err(if unsent || never_processed(&error) {
                Exchange::NotSent
            } else {
                failed(AttemptError::Protocol(error.to_string()))
            });
        }
    };
    let (parts, mut body) = response.into_parts();
    let mut buffer = BytesMut::new();
    loop {
        let frame = timeout(timeouts.between_bytes, body.frame())
            .await
            .map_err(|_| failed(AttemptError::BetweenBytesTimeout))?;
        match frame {
            None => break,
            Some(Err(error)) => return Err(failed(AttemptError::Protocol(error.to_string()))),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if buffer.len() + data.len() > max_bytes {
                        return Err(failed(AttemptError::ResponseTooLarge { limit: max_bytes }));
                    }
                    buffer.extend_from_slice(&data);
                }
            }
        }
    }
    let response = BufferedResponse {
        status: parts.status,
        headers: parts.headers,
        body: buffer.freeze(),
        ..BufferedResponse::default()
    };
    Ok(response)
}

/// An HTTP/2 stream the server refused (`REFUSED_STREAM`) or cut off by a GOAWAY that says it
/// was not processed (`NO_ERROR` at shutdown): RFC 9113 §8.7 says it is safe to send again.
fn never_processed(error: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(h2) = cause.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (h2.is_go_away()
                    && h2.is_remote()
                    && h2.reason() == Some(h2::Reason::NO_ERROR));
        }
        source = cause.source();
    }
    false
}

/// HTTP/1.1 wants `GET /path?query` and a `Host` header, not the absolute URI.
fn to_origin_form(request: Request<Bytes>) -> Request<Full<Bytes>> {
    let (mut parts, body) = request.into_parts();
    if let Some(authority) = parts.uri.authority().cloned() {
        parts.headers.insert(
            HOST,
            authority
                .as_str()
                .parse()
                .expect("an authority is a valid header value"),
        );
    }
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    parts.uri = path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
    Request::from_parts(parts, Full::new(body))
}

/// HTTP/2 takes the absolute URI (`:scheme`, `:authority`, `:path`) and forbids the
/// connection-specific headers of HTTP/1.1 (RFC 9113 §8.2.2): they are removed, and `Host`
/// too, since `:authority` carries the checked origin.
fn to_http2_form(request: Request<Bytes>) -> Request<Full<Bytes>> {
    let (mut parts, body) = request.into_parts();
    let headers = &mut parts.headers;
    // Headers a `Connection` header names are hop-by-hop as well.
    let named: Vec<http::HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| http::HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [CONNECTION, TRANSFER_ENCODING, UPGRADE, HOST] {
        headers.remove(name);
    }
    for name in ["keep-alive", "proxy-connection"] {
        headers.remove(name);
    }
    if headers
        .get(TE)
        .is_some_and(|value| !value.as_bytes().eq_ignore_ascii_case(b"trailers"))
    {
        headers.remove(TE);
    }
    parts.version = http::Version::HTTP_2;
    Request::from_parts(parts, Full::new(body))
}
