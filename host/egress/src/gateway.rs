//! [`EgressGateway`]: the shared resources (secrets, cache, connection pool, TLS roots,
//! per-destination state) and the layer stack over them, built once.

use crate::{
    Caller, CallerPolicy, EgressError,
    breaker::BreakerState,
    cache::BufferedResponse,
    config::{CallPolicy, EgressConfig},
    error::SetupError,
    layer::{Call, Stack, Stage, TimeoutOverrides},
    pool::ConnectionPool,
    redact::Redactor,
    secrets::SecretStore,
};
use bytes::Bytes;
use http::Request;
use std::{sync::Arc, time::Instant};

/// The gateway shared by every caller of a host (the plugins' one, or the service's own).
pub struct EgressGateway {
    config: EgressConfig,
    secrets: Arc<SecretStore>,
    pool: ConnectionPool,
    stack: Stack,
}

impl EgressGateway {
    /// Loads the secrets and sets up the cache and TLS roots (webpki's Mozilla roots, plus the
    /// configured `tls-roots`).
    pub fn new(config: EgressConfig) -> Result<Self, SetupError> {
        let secrets = Arc::new(SecretStore::load(&config.secrets)?);
        secrets.watch(config.secrets_refresh);
        let tls = crate::tls::client_config(&config.tls_roots)?;
        if config.cache_entries.is_some() {
            tracing::warn!(
                "egress `cache-entries` is no longer used: the response cache is bounded by `cache-bytes`"
            );
        }
        let pool = ConnectionPool::new(config.pool.clone());
        let stack = Stack::new(&config, secrets.clone(), pool.clone(), Arc::new(tls));
        Ok(Self {
            config,
            secrets,
            pool,
            stack,
        })
    }

    /// Finds every configured secret (as in force now, and the value each replaced) in any
    /// common encoding: for anything a plugin produced before it reaches a log line or a caller.
    pub fn redactor(&self) -> Arc<Redactor> {
        self.secrets.redactor()
    }

    /// The secrets, as in force now (file secrets rotate without a restart).
    pub fn secrets(&self) -> &Arc<SecretStore> {
        &self.secrets
    }

    /// The idle keep-alive connections.
    pub fn pool(&self) -> &ConnectionPool {
        &self.pool
    }

    /// The gateway's configuration.
    pub fn config(&self) -> &EgressConfig {
        &self.config
    }

    /// The host-wide defaults for destinations.
    pub fn defaults(&self) -> &CallPolicy {
        &self.config.defaults
    }

    /// The breaker state of `caller`'s destination `origin` (`scheme://host:port`), if it has
    /// been called.
    pub fn breaker_state(&self, caller: &Caller, origin: &str) -> Option<BreakerState> {
        self.stack.destinations.breaker_state(caller, origin)
    }

    /// Sends `request` for `policy`'s caller through every layer, finishing before `deadline`;
    /// `overrides` can only shorten the destination's timeouts.
    pub async fn send(
        &self,
        policy: &CallerPolicy,
        request: Request<Bytes>,
        overrides: Option<TimeoutOverrides>,
        deadline: Instant,
    ) -> Result<BufferedResponse, EgressError> {
        self.stack
            .layers
            .send(Call {
                policy,
                request,
                overrides,
                deadline,
            })
            .await
    }
}
