//! Keep-alive connections, kept per destination host and checked address, so an uncached
//! request does not pay a TCP (and TLS) handshake every time.
//!
//! A connection is only ever opened to an address the SSRF guard checked (the key holds that
//! address and the TLS server name), so reuse never bypasses the guard. HTTP/1.1 connections
//! carry one request at a time: they are checked out exclusively and given back, bounded per
//! key. An HTTP/2 connection (the upstream chose `h2` by ALPN) carries many requests at once:
//! one per key is kept and shared, each request taking a clone of its handle (hyper queues
//! requests past the server's `max_concurrent_streams`). Either kind is closed after an idle
//! timeout and a maximum lifetime, and one that the peer closed (or sent GOAWAY on) is dropped
//! on checkout; a request that a stale pooled connection could not even send is sent again on
//! a fresh one (see `client.rs`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::{http1, http2};
use serde::Deserialize;
use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::task::JoinHandle;

/// How idle connections are kept (`[...egress.pool]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Most idle HTTP/1.1 connections kept per host and address (`max-idle-per-host`; 0
    /// disables pooling, HTTP/2 sharing included). An HTTP/2 upstream gets one shared
    /// connection per host and address.
    #[serde(rename = "max-idle-per-host")]
    pub max_idle_per_host: usize,
    /// An idle connection is closed after this long (`idle-timeout-ms`); keep it below the
    /// upstreams' own keep-alive timeouts.
    #[serde(rename = "idle-timeout-ms", with = "crate::config::millis")]
    pub idle_timeout: Duration,
    /// No connection is reused once it is this old (`max-lifetime-ms`), so DNS changes and
    /// load balancers' rebalancing are seen.
    #[serde(rename = "max-lifetime-ms", with = "crate::config::millis")]
    pub max_lifetime: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_idle_per_host: 32,
            idle_timeout: Duration::from_secs(30),
            max_lifetime: Duration::from_mins(5),
        }
    }
}

/// Which connections are interchangeable: same scheme, same server name, same checked address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// A TLS connection (an `https` destination).
    pub tls: bool,
    /// The destination's host name, which is also the TLS server name.
    pub host: String,
    /// The checked address the connection was opened to.
    pub address: SocketAddr,
}

/// The protocol a connection speaks: HTTP/2 when the upstream chose `h2` by ALPN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (every plain `http` connection, and TLS when the upstream did not pick `h2`).
    Http1,
    /// HTTP/2.
    Http2,
}

impl Protocol {
    /// The value of the metrics' `protocol` label: `http/1.1` or `h2` (the ALPN ids).
    pub fn label(self) -> &'static str {
        match self {
            Self::Http1 => "http/1.1",
            Self::Http2 => "h2",
        }
    }
}

/// Aborts a connection's driver task when the last handle to the connection is gone.
struct Driver(JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An open HTTP/1.1 connection: the handle to send on and the task driving it. Dropping it
/// closes the connection.
pub struct Connection {
    pub(crate) sender: http1::SendRequest<Full<Bytes>>,
    _driver: Driver,
    opened: Instant,
}

impl Connection {
    /// Wraps a fresh connection's handle and driver task.
    pub(crate) fn new(sender: http1::SendRequest<Full<Bytes>>, task: JoinHandle<()>) -> Self {
        Self {
            sender,
            _driver: Driver(task),
            opened: Instant::now(),
        }
    }
}

/// A handle to an open HTTP/2 connection. Clones share the connection, which closes when the
/// last clone is dropped.
#[derive(Clone)]
pub struct SharedConnection {
    pub(crate) sender: http2::SendRequest<Full<Bytes>>,
    driver: Arc<Driver>,
    opened: Instant,
}

impl SharedConnection {
    /// Wraps a fresh HTTP/2 connection's handle and driver task.
    pub(crate) fn new(sender: http2::SendRequest<Full<Bytes>>, task: JoinHandle<()>) -> Self {
        Self {
            sender,
            driver: Arc::new(Driver(task)),
            opened: Instant::now(),
        }
    }

    /// True when `other` is a handle to the same connection.
    fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.driver, &other.driver)
    }

    /// False once the peer closed it or sent GOAWAY: no new request can go out on it.
    pub(crate) fn usable(&self) -> bool {
        !self.sender.is_closed() && self.sender.is_ready()
    }
}

/// A connection taken from the pool.
pub enum Pooled {
    /// HTTP/1.1, used by this request alone; give it back with [`ConnectionPool::checkin`].
    Exclusive(Connection),
    /// HTTP/2, shared with other requests; it stays in the pool meanwhile.
    Shared(SharedConnection),
}

struct Idle {
    connection: Connection,
    since: Instant,
}

struct Kept {
    connection: SharedConnection,
    last_used: Instant,
}

#[derive(Default)]
struct State {
    idle: HashMap<PoolKey, Vec<Idle>>,
    shared: HashMap<PoolKey, Kept>,
    /// Keys whose upstream answered ALPN with HTTP/1.1: new connections to them open in
    /// parallel, without waiting on [`ConnectionPool::connect_gate`].
    http1_only: HashSet<PoolKey>,
    gates: HashMap<PoolKey, Arc<tokio::sync::Mutex<()>>>,
}

/// The gateway's idle and shared connections. Clones share the same connections.
#[derive(Clone)]
pub struct ConnectionPool {
    config: PoolConfig,
    state: Arc<Mutex<State>>,
}

fn idle_gauge(protocol: Protocol) -> metrics::Gauge {
    metrics::gauge!("egress_connections_idle", "protocol" => protocol.label())
}

impl ConnectionPool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        Self {
            config,
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock::lock(&self.state)
    }

    /// A connection for `key`, if a live one is kept: the shared HTTP/2 one, else the most
    /// recently used idle HTTP/1.1 one. Expired and closed ones met on the way are dropped.
    pub fn checkout(&self, key: &PoolKey) -> Option<Pooled> {
        let mut state = self.lock();
        if let Some(shared) = self.shared_in(&mut state, key) {
            return Some(Pooled::Shared(shared));
        }
        let now = Instant::now();
        let connections = state.idle.get_mut(key)?;
        while let Some(candidate) = connections.pop() {
            idle_gauge(Protocol::Http1).decrement(1.0);
            let fresh = now.duration_since(candidate.since) < self.config.idle_timeout
                && now.duration_since(candidate.connection.opened) < self.config.max_lifetime;
            if fresh && !candidate.connection.sender.is_closed() {
                reused(Protocol::Http1);
                return Some(Pooled::Exclusive(candidate.connection));
            }
        }
        None
    }

    /// The shared HTTP/2 connection for `key`, if a live one is kept.
    pub fn checkout_shared(&self, key: &PoolKey) -> Option<SharedConnection> {
        self.shared_in(&mut self.lock(), key)
    }

    fn shared_in(&self, state: &mut State, key: &PoolKey) -> Option<SharedConnection> {
        let kept = state.shared.get_mut(key)?;
        let now = Instant::now();
        let fresh = now.duration_since(kept.last_used) < self.config.idle_timeout
            && now.duration_since(kept.connection.opened) < self.config.max_lifetime;
        if fresh && kept.connection.usable() {
            kept.last_used = now;
            reused(Protocol::Http2);
            return Some(kept.connection.clone());
        }
        state.shared.remove(key);
        idle_gauge(Protocol::Http2).decrement(1.0);
        None
    }

    /// Keeps an HTTP/1.1 `connection` for reuse, unless the pool for `key` is full or it is
    /// too old.
    pub fn checkin(&self, key: PoolKey, connection: Connection) {
        if self.config.max_idle_per_host == 0
            || connection.sender.is_closed()
            || connection.opened.elapsed() >= self.config.max_lifetime
        {
            return;
        }
        let mut state = self.lock();
        let connections = state.idle.entry(key).or_default();
        if connections.len() >= self.config.max_idle_per_host {
            return;
        }
        connections.push(Idle {
            connection,
            since: Instant::now(),
        });
        idle_gauge(Protocol::Http1).increment(1.0);
    }

    /// Shares a new HTTP/2 `connection` for `key` with the requests that follow (replacing a
    /// previous one, whose requests in flight finish on it).
    pub fn share(&self, key: PoolKey, connection: SharedConnection) {
        if self.config.max_idle_per_host == 0 {
            return;
        }
        let mut state = self.lock();
        state.http1_only.remove(&key);
        let kept = Kept {
            connection,
            last_used: Instant::now(),
        };
        if state.shared.insert(key, kept).is_none() {
            idle_gauge(Protocol::Http2).increment(1.0);
        }
    }

    /// Stops sharing `connection` for `key` (it could not send: closed, or GOAWAY received).
    pub fn forget(&self, key: &PoolKey, connection: &SharedConnection) {
        let mut state = self.lock();
        if state
            .shared
            .get(key)
            .is_some_and(|kept| kept.connection.same(connection))
        {
            state.shared.remove(key);
            idle_gauge(Protocol::Http2).decrement(1.0);
        }
    }

    /// Remembers that `key`'s upstream speaks HTTP/1.1 only, so its new connections need not
    /// wait for one another.
    pub fn learned_http1(&self, key: PoolKey) {
        self.lock().http1_only.insert(key);
    }

    /// For a TLS `key` whose protocol is not known to be HTTP/1.1: a lock that the requests
    /// needing a new connection take in turn, so that concurrent first requests to an HTTP/2
    /// upstream open one connection and share it rather than opening one each.
    pub fn connect_gate(&self, key: &PoolKey) -> Option<Arc<tokio::sync::Mutex<()>>> {
        if !key.tls || self.config.max_idle_per_host == 0 {
            return None;
        }
        let mut state = self.lock();
        if state.http1_only.contains(key) {
            return None;
        }
        Some(state.gates.entry(key.clone()).or_default().clone())
    }

    /// Connections kept right now, idle HTTP/1.1 and shared HTTP/2 (for tests and
    /// diagnostics).
    pub fn idle_count(&self) -> usize {
        let state = self.lock();
        state.idle.values().map(Vec::len).sum::<usize>() + state.shared.len()
    }

    /// Shared HTTP/2 connections kept right now (for tests and diagnostics).
    pub fn shared_count(&self) -> usize {
        self.lock().shared.len()
    }
}

fn reused(protocol: Protocol) {
    metrics::counter!("egress_connections_reused_total", "protocol" => protocol.label())
        .increment(1);
}
