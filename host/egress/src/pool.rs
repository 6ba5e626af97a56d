//! Keep-alive connections, kept per destination host and checked address, so an uncached
//! request does not pay a TCP (and TLS) handshake every time.
//!
//! A connection is only ever opened to an address the SSRF guard checked (the key holds that
//! address), so reuse never bypasses the guard. Idle connections are bounded per key, closed
//! after an idle timeout and a maximum lifetime, and one that the peer closed is dropped on
//! checkout; a request that a stale pooled connection could not even send is sent again on a
//! fresh one (see `client.rs`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use serde::Deserialize;
use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::task::JoinHandle;

/// How idle connections are kept (`[...egress.pool]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// Most idle connections kept per host and address (`max-idle-per-host`; 0 disables
    /// pooling).
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

/// An open HTTP/1.1 connection: the handle to send on and the task driving it. Dropping it
/// closes the connection.
pub struct Connection {
    pub(crate) sender: SendRequest<Full<Bytes>>,
    task: Option<JoinHandle<()>>,
    opened: Instant,
}

impl Connection {
    /// Wraps a fresh connection's handle and driver task.
    pub(crate) fn new(sender: SendRequest<Full<Bytes>>, task: JoinHandle<()>) -> Self {
        Self {
            sender,
            task: Some(task),
            opened: Instant::now(),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// The gateway's idle connections. Clones share the same connections.
#[derive(Clone)]
pub struct ConnectionPool {
    config: PoolConfig,
    idle: Arc<Mutex<HashMap<PoolKey, Vec<Idle>>>>,
}

impl ConnectionPool {
    /// An empty pool.
    pub fn new(config: PoolConfig) -> Self {
        Self {
            config,
            idle: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PoolKey, Vec<Idle>>> {
        crate::lock::lock(&self.idle)
    }

    /// The most recently used live connection for `key`, if any. Expired and closed ones met
    /// on the way are dropped.
    pub fn checkout(&self, key: &PoolKey) -> Option<Connection> {
        let mut idle = self.lock();
        let connections = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(candidate) = connections.pop() {
            let fresh = now.duration_since(candidate.since) < self.config.idle_timeout
                && now.duration_since(candidate.connection.opened) < self.config.max_lifetime;
            if fresh && !candidate.connection.sender.is_closed() {
                metrics::counter!("egress_connections_reused_total").increment(1);
                metrics::gauge!("egress_connections_idle").decrement(1.0);
                return Some(candidate.connection);
            }
            metrics::gauge!("egress_connections_idle").decrement(1.0);
        }
        None
    }

    /// Keeps `connection` for reuse, unless the pool for `key` is full or it is too old.
    pub fn checkin(&self, key: PoolKey, connection: Connection) {
        if self.config.max_idle_per_host == 0
            || connection.sender.is_closed()
            || connection.opened.elapsed() >= self.config.max_lifetime
        {
            return;
        }
        let mut idle = self.lock();
        let connections = idle.entry(key).or_default();
        if connections.len() >= self.config.max_idle_per_host {
            return;
        }
        connections.push(Idle {
            connection,
            since: Instant::now(),
        });
        metrics::gauge!("egress_connections_idle").increment(1.0);
    }

    /// Idle connections kept right now (for tests and diagnostics).
    pub fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }
}
