//! The HTTP/1.1 server loop: accepts connections up to a cap, serves each with hyper, and
//! closes connections whose clients are too slow.
//!
//! Slow clients are bounded by two deadlines, enforced per connection by a watchdog that
//! watches the connection's reads and its requests:
//!
//! - **header read** (`header-read-timeout-ms`): a new connection must deliver its first request
//!   head within this time of being accepted, and on a kept-alive connection a request head
//!   must be complete within this time of its first byte. A client trickling a header byte at
//!   a time is disconnected when it runs out.
//! - **keep-alive idle** (`keep-alive-timeout-ms`): a connection with no request in progress
//!   that has not started a new one this long after its last response is closed.
//!
//! No deadline runs while a request is being handled (a CAPTCHA check or a password hash may
//! take a while). hyper's own header-read timeout is set as a backstop to the sum of the two
//! (the longest a head can legitimately take from the moment hyper starts waiting for it).
//!
//! Header limits: `max-headers` and `max-header-bytes` are checked on every request by
//! [`crate::problem`]'s layer, which answers `431` as problem+json. hyper itself refuses heads
//! beyond four times those limits before any service code runs; those `431`s (and its `400`
//! for a request line or header it cannot parse) are hyper's plain, body-less responses.

use crate::client_address::TrustedProxies;
use axum::{Router, body::Body, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use std::{
    future::Future,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore, watch},
    time::Instant,
};
use tower::ServiceExt;

/// The `[http]` table: the server's limits and who may forward client addresses.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Peers (CIDR blocks) whose `Forwarded` / `X-Forwarded-For` are believed
    /// (`trusted-proxies`; default none: the headers are ignored).
    #[serde(rename = "trusted-proxies")]
    pub trusted_proxies: TrustedProxies,
    /// How long a request head may take (`header-read-timeout-ms`).
    #[serde(rename = "header-read-timeout-ms")]
    pub header_read_timeout_ms: u64,
    /// How long an idle kept-alive connection stays open (`keep-alive-timeout-ms`).
    #[serde(rename = "keep-alive-timeout-ms")]
    pub keep_alive_timeout_ms: u64,
    /// Most connections open at once; further clients wait in the listen backlog
    /// (`max-connections`).
    #[serde(rename = "max-connections")]
    pub max_connections: usize,
    /// Most header fields in a request (`max-headers`).
    #[serde(rename = "max-headers")]
    pub max_headers: usize,
    /// Most bytes of header fields in a request, names and values (`max-header-bytes`).
    #[serde(rename = "max-header-bytes")]
    pub max_header_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            trusted_proxies: TrustedProxies::default(),
            header_read_timeout_ms: 10_000,
            keep_alive_timeout_ms: 30_000,
            max_connections: 1024,
            max_headers: 64,
            max_header_bytes: 16 << 10,
        }
    }
}

impl HttpConfig {
    fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    fn keep_alive_timeout(&self) -> Duration {
        Duration::from_millis(self.keep_alive_timeout_ms)
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then lets open connections finish
/// their requests.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    config: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.max_connections > 0,
        "[http] max-connections must be at least 1"
    );
    let max_connections = u32::try_from(config.max_connections)
        .map_err(|_| anyhow::anyhow!("[http] max-connections is too large"))?;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout() + config.keep_alive_timeout())
        .max_headers(config.max_headers.saturating_mul(4).max(16))
        .max_header_size(config.max_header_bytes.saturating_mul(4).max(8192))
        .max_buf_size(config.max_header_bytes.saturating_mul(4).max(8192) + 8192);
    let builder = Arc::new(builder);
    let permits = Arc::new(Semaphore::new(max_connections as usize));
    let (stop, stopped) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit?,
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let connection = Connection {
            router: router.clone(),
            builder: builder.clone(),
            header_read_timeout: config.header_read_timeout(),
            keep_alive_timeout: config.keep_alive_timeout(),
        };
        let stopped = stopped.clone();
        tokio::spawn(async move {
            metrics::gauge!("http_open_connections").increment(1);
            connection.run(stream, peer, stopped).await;
            metrics::gauge!("http_open_connections").decrement(1);
            drop(permit);
        });
    }
    let _ = stop.send(true);
    // Every connection returns its permit when it ends.
    let _ = permits.acquire_many(max_connections).await?;
    Ok(())
}

/// What one connection needs.
struct Connection {
    router: Router,
    builder: Arc<hyper::server::conn::http1::Builder>,
    header_read_timeout: Duration,
    keep_alive_timeout: Duration,
}

impl Connection {
    async fn run(self, stream: TcpStream, peer: SocketAddr, mut stopped: watch::Receiver<bool>) {
        let clock = Arc::new(Clock::new(Instant::now() + self.header_read_timeout));
        let io = TokioIo::new(WatchedStream {
            inner: stream,
            clock: clock.clone(),
            header_read_timeout: self.header_read_timeout,
        });
        let router = self.router;
        let keep_alive_timeout = self.keep_alive_timeout;
        let service_clock = clock.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let in_flight = RequestGuard::start(service_clock.clone(), keep_alive_timeout);
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(Body::new)).await;
                drop(in_flight);
                response
            }
        });
        let mut connection = pin!(self.builder.serve_connection(io, service));
        let mut draining = false;
        loop {
            let deadline = clock.deadline();
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                () = clock.changed.notified() => {}
                () = sleep_until(deadline) => {
                    if let Some(reason) = clock.expired(Instant::now()) {
                        tracing::debug!(%peer, reason, "closing a slow connection");
                        metrics::counter!("http_connections_timed_out_total", "reason" => reason).increment(1);
                        return;
                    }
                }
                changed = stopped.changed(), if !draining => {
                    if changed.is_err() || *stopped.borrow() {
                        draining = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<(Instant, &'static str)>) {
    match deadline {
        Some((at, _)) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// A connection's deadline, moved by its reads and its requests.
struct Clock {
    state: Mutex<ClockState>,
    /// Woken whenever the deadline moves, so the watchdog re-arms.
    changed: Notify,
}

struct ClockState {
    /// Requests being handled.
    in_flight: usize,
    /// A request head has started arriving (or the connection is new): the header deadline runs.
    reading_head: bool,
    /// When the connection is closed unless something happens, and why.
    deadline: Option<(Instant, &'static str)>,
}

impl Clock {
    fn new(first_head_by: Instant) -> Self {
        Self {
            state: Mutex::new(ClockState {
                in_flight: 0,
                reading_head: true,
                deadline: Some((first_head_by, "header-read")),
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        // The state stays consistent even if a holder panicked: every update is one assignment.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn deadline(&self) -> Option<(Instant, &'static str)> {
        self.lock().deadline
    }

    /// The reason to close now, if the deadline has passed.
    fn expired(&self, now: Instant) -> Option<&'static str> {
        let state = self.lock();
        match state.deadline {
            Some((at, reason)) if state.in_flight == 0 && at <= now => Some(reason),
            _ => None,
        }
    }

    /// Bytes arrived: between requests, that is the start of the next head.
    fn bytes_read(&self, header_read_timeout: Duration) {
        let mut state = self.lock();
        if state.in_flight == 0 && !state.reading_head {
            state.reading_head = true;
            state.deadline = Some((Instant::now() + header_read_timeout, "header-read"));
            drop(state);
            self.changed.notify_one();
        }
    }
}

/// Marks a request in flight; when it ends, the keep-alive deadline starts.
struct RequestGuard {
    clock: Arc<Clock>,
    keep_alive_timeout: Duration,
}

impl RequestGuard {
    fn start(clock: Arc<Clock>, keep_alive_timeout: Duration) -> Self {
        {
            let mut state = clock.lock();
            state.in_flight += 1;
            state.reading_head = false;
            state.deadline = None;
        }
        clock.changed.notify_one();
        Self {
            clock,
            keep_alive_timeout,
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let mut state = self.clock.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
        if state.in_flight == 0 {
            state.deadline = Some((Instant::now() + self.keep_alive_timeout, "keep-alive"));
        }
        drop(state);
        self.clock.changed.notify_one();
    }
}

/// The TCP stream, telling the clock when bytes arrive.
struct WatchedStream {
    inner: TcpStream,
    clock: Arc<Clock>,
    header_read_timeout: Duration,
}

impl AsyncRead for WatchedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_read(self.header_read_timeout);
        }
        polled
    }
}

impl AsyncWrite for WatchedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
