//! Layer 4, response cache and single-flight for GETs that carry no credentials: concurrent
//! identical requests share one upstream call, and a cacheable answer serves the next ones
//! until its TTL ([`crate::cache`]).

use super::{Routed, Stage};
use crate::{
    EgressError,
    cache::{self as store, BufferedResponse, CacheEntry, ResponseCache},
};
use http::Method;
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// Serves cacheable GETs from the cache, fetching each key once.
pub struct Cache<S> {
    cache: ResponseCache,
    inner: S,
}

impl<S> Cache<S> {
    /// `cache` in front of `inner`.
    pub fn new(cache: ResponseCache, inner: S) -> Self {
        Self { cache, inner }
    }
}

/// Why a fetched result did not go into the cache: shared with coalesced waiters.
#[derive(Debug)]
enum Uncached {
    Response(BufferedResponse),
    Failed(EgressError),
}

// The stages below this one (guards, retries, the connection and its TLS handshake) make a
// future of ~60 KB; it is boxed, only when the network is needed, so that a cache hit's
// future stays small: callers box and move the gateway's future, and moving 60 KB on every
// hit cost more than the hit itself.
impl<'a, S: Stage<Routed<'a>>> Stage<Routed<'a>> for Cache<S> {
    async fn send(&self, routed: Routed<'a>) -> Result<BufferedResponse, EgressError> {
        // A shared cache never stores answers to credentialed requests (RFC 9111 §3.5).
        let cacheable = routed.request.method() == Method::GET
            && !routed.carries_secrets
            && !routed
                .request
                .headers()
                .contains_key(http::header::AUTHORIZATION);
        if !cacheable {
            return Box::pin(self.inner.send(routed)).await;
        }
        let key = routed.request.uri().to_string();
        if let Some(entry) = self.cache.get(&key).await {
            routed.destination.metrics.cache_hit();
            store::note_served_from_cache();
            return Ok((*entry.response).clone());
        }
        let default_ttl = routed.rule.config.cache_ttl;
        // Whether this call's own fetch ran; if not, a concurrent identical one answered it.
        let fetched_here = AtomicBool::new(false);
        let fetched = self
            .cache
            .try_get_with(key, async {
                fetched_here.store(true, Ordering::Relaxed);
                let response = Box::pin(self.inner.send(routed))
                    .await
                    .map_err(Uncached::Failed)?;
                match store::cache_ttl(&response, default_ttl) {
                    Some(ttl) => Ok(CacheEntry {
                        response: Arc::new(store::compact(response)),
                        ttl,
                    }),
                    None => Err(Uncached::Response(response)),
                }
            })
            .await;
        if !fetched_here.load(Ordering::Relaxed) {
            store::note_served_from_cache();
        }
        match fetched {
            Ok(entry) => Ok((*entry.response).clone()),
            Err(shared) => match &*shared {
                Uncached::Response(response) => Ok(response.clone()),
                Uncached::Failed(error) => Err(error.clone()),
            },
        }
    }
}
