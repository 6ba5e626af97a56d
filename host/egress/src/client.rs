//! One HTTP/1.1 attempt to already-checked addresses: a pooled keep-alive connection or a new
//! one (connect, TLS), send, read a bounded body, each step under its own timeout.

use crate::{
    cache::BufferedResponse,
    pool::{Connection, ConnectionPool, PoolKey},
};
use bytes::{Bytes, BytesMut};
use http::{
    Request,
    header::{CONNECTION, HOST},
};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::{net::SocketAddr, sync::Arc, time::Duration};
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
    /// The canonical request with its absolute URI; sent in origin form with a `Host` header.
    pub request: Request<Bytes>,
    /// The attempt's timeouts.
    pub timeouts: AttemptTimeouts,
    /// The largest response body accepted, in bytes.
    pub max_response_bytes: usize,
    /// The TLS client configuration (trusted roots, protocol versions).
    pub tls: &'a Arc<rustls::ClientConfig>,
    /// Where keep-alive connections are taken from and given back.
    pub pool: &'a ConnectionPool,
}

/// Makes one attempt: on a pooled keep-alive connection to one of the checked addresses when
/// there is one (a stale one that could not even send the request is dropped and the request
/// goes out on a fresh connection), else on a new connection, which is pooled afterwards when
/// the response allows it.
pub async fn send_once(attempt: Attempt<'_>) -> Result<BufferedResponse, AttemptError> {
    let key_for = |address: SocketAddr| PoolKey {
        tls: attempt.use_tls,
        host: attempt.host.to_owned(),
        address,
    };
    let mut request = Some(attempt.request);
    for address in attempt.addresses {
        let key = key_for(*address);
        let Some(connection) = attempt.pool.checkout(&key) else {
            continue;
        };
        let Some(pending) = request.take() else { break };
        // Kept (cheaply: the body is shared) in case the stale connection can't send it.
        let retained = pending.clone();
        match exchange(
            connection,
            pending,
            attempt.timeouts,
            attempt.max_response_bytes,
        )
        .await
        {
            Ok((response, connection)) => {
                if let Some(connection) = connection {
                    attempt.pool.checkin(key, connection);
                }
                return Ok(response);
            }
            // Closed under us before anything was written: try again on a fresh connection.
            Err(Exchange::NotSent) => request = Some(retained),
            Err(Exchange::Failed(error)) => return Err(error),
        }
    }
    let Some(request) = request else {
        return Err(AttemptError::Connect("no address".to_owned()));
    };
    let (address, stream) = connect(attempt.addresses, attempt.timeouts.connect).await?;
    metrics::counter!("egress_connections_opened_total").increment(1);
    let connection = if attempt.use_tls {
        let name = rustls::pki_types::ServerName::try_from(attempt.host.to_owned())
            .map_err(|error| AttemptError::Tls(error.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(attempt.tls.clone());
        let stream = timeout(attempt.timeouts.connect, connector.connect(name, stream))
            .await
            .map_err(|_| AttemptError::ConnectTimeout)?
            .map_err(|error| AttemptError::Tls(error.to_string()))?;
        open(stream).await?
    } else {
        open(stream).await?
    };
    match exchange(
        connection,
        request,
        attempt.timeouts,
        attempt.max_response_bytes,
    )
    .await
    {
        Ok((response, connection)) => {
            if let Some(connection) = connection {
                attempt.pool.checkin(key_for(address), connection);
            }
            Ok(response)
        }
        Err(Exchange::NotSent) => Err(AttemptError::Protocol(
            "the new connection closed before the request was sent".to_owned(),
        )),
        Err(Exchange::Failed(error)) => Err(error),
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

/// The HTTP/1.1 handshake on a fresh stream, with a task driving the connection.
async fn open<S>(stream: S) -> Result<Connection, AttemptError>
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

/// How an exchange on a connection failed.
enum Exchange {
    /// The connection was closed before the request was written: it can go out elsewhere.
    NotSent,
    Failed(AttemptError),
}

/// Sends `request` on `connection` and reads a bounded body. Gives the connection back when
/// it can carry another request (the body was read to its end and nobody asked to close).
async fn exchange(
    mut connection: Connection,
    request: Request<Bytes>,
    timeouts: AttemptTimeouts,
    max_bytes: usize,
) -> Result<(BufferedResponse, Option<Connection>), Exchange> {
    let failed = Exchange::Failed;
    let wants_close = request
        .headers()
        .get(CONNECTION)
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
    let sent = connection.sender.try_send_request(to_origin_form(request));
    let response = match timeout(timeouts.first_byte, sent).await {
        Err(_) => return Err(failed(AttemptError::FirstByteTimeout)),
        Ok(Ok(response)) => response,
        Ok(Err(mut error)) => {
            return Err(match error.take_message() {
                Some(_unsent) => Exchange::NotSent,
                None => failed(AttemptError::Protocol(error.into_error().to_string())),
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
    let closing = wants_close
        || parts
            .headers
            .get(CONNECTION)
            .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"close"));
    let response = BufferedResponse {
        status: parts.status,
        headers: parts.headers,
        body: buffer.freeze(),
        ..BufferedResponse::default()
    };
    Ok((response, (!closing).then_some(connection)))
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
