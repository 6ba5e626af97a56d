//! One HTTP/1.1 attempt to already-checked addresses: connect, TLS, send, read a bounded body,
//! each step under its own timeout.

use super::cache::BufferedResponse;
use bytes::{Bytes, BytesMut};
use http::{Request, header::HOST};
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
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

/// How an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptError {
    /// Nothing was sent: safe to retry whatever the method.
    Connect(String),
    ConnectTimeout,
    Tls(String),
    FirstByteTimeout,
    BetweenBytesTimeout,
    ResponseTooLarge {
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

/// Everything one attempt needs.
pub struct Attempt<'a> {
    pub use_tls: bool,
    pub host: &'a str,
    pub addresses: &'a [SocketAddr],
    pub request: Request<Bytes>,
    pub timeouts: AttemptTimeouts,
    pub max_response_bytes: usize,
    pub tls: &'a Arc<rustls::ClientConfig>,
}

/// Makes one attempt.
pub async fn send_once(attempt: Attempt<'_>) -> Result<BufferedResponse, AttemptError> {
    let stream = connect(attempt.addresses, attempt.timeouts.connect).await?;
    if attempt.use_tls {
        let name = rustls::pki_types::ServerName::try_from(attempt.host.to_owned())
            .map_err(|error| AttemptError::Tls(error.to_string()))?;
        let connector = tokio_rustls::TlsConnector::from(attempt.tls.clone());
        let stream = timeout(attempt.timeouts.connect, connector.connect(name, stream))
            .await
            .map_err(|_| AttemptError::ConnectTimeout)?
            .map_err(|error| AttemptError::Tls(error.to_string()))?;
        exchange(
            stream,
            attempt.request,
            attempt.timeouts,
            attempt.max_response_bytes,
        )
        .await
    } else {
        exchange(
            stream,
            attempt.request,
            attempt.timeouts,
            attempt.max_response_bytes,
        )
        .await
    }
}

async fn connect(addresses: &[SocketAddr], limit: Duration) -> Result<TcpStream, AttemptError> {
    let mut last = AttemptError::Connect("no address".to_owned());
    for address in addresses {
        match timeout(limit, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(error)) => last = AttemptError::Connect(format!("{address}: {error}")),
            Err(_) => last = AttemptError::ConnectTimeout,
        }
    }
    Err(last)
}

async fn exchange<S>(
    stream: S,
    request: Request<Bytes>,
    timeouts: AttemptTimeouts,
    max_bytes: usize,
) -> Result<BufferedResponse, AttemptError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|error| AttemptError::Protocol(error.to_string()))?;
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    let result = async {
        let request = to_origin_form(request);
        let response = timeout(timeouts.first_byte, sender.send_request(request))
            .await
            .map_err(|_| AttemptError::FirstByteTimeout)?
            .map_err(|error| AttemptError::Protocol(error.to_string()))?;
        let (parts, mut body) = response.into_parts();
        let mut buffer = BytesMut::new();
        loop {
            let frame = timeout(timeouts.between_bytes, body.frame())
                .await
                .map_err(|_| AttemptError::BetweenBytesTimeout)?;
            match frame {
                None => break,
                Some(Err(error)) => return Err(AttemptError::Protocol(error.to_string())),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if buffer.len() + data.len() > max_bytes {
                            return Err(AttemptError::ResponseTooLarge { limit: max_bytes });
                        }
                        buffer.extend_from_slice(&data);
                    }
                }
            }
        }
        Ok(BufferedResponse {
            status: parts.status,
            headers: parts.headers,
            body: buffer.freeze(),
        })
    }
    .await;
    connection.abort();
    result
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
        .map(|path| path.as_str())
        .unwrap_or("/");
    parts.uri = path.parse().unwrap_or_else(|_| http::Uri::from_static("/"));
    Request::from_parts(parts, Full::new(body))
}
