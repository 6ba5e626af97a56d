//! Response cache for cacheable GETs, with single-flight: concurrent identical requests share
//! one upstream call (moka's `try_get_with` runs one initialiser per key; the rest wait).

use bytes::Bytes;
use http::{HeaderMap, StatusCode, header::CACHE_CONTROL};
use moka::{Expiry, future::Cache};
use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

tokio::task_local! {
    /// Set while a call runs under [`observe_cache`]: whether its answer came from the cache.
    static SERVED_FROM_CACHE: Arc<AtomicBool>;
}

/// Runs `call` (a [`crate::EgressGateway::send`]) and says whether its answer came from the
/// cache or a coalesced single-flight fetch rather than from an upstream call of its own: the
/// decision log records it per egress call. Nothing in the call's signature changes.
pub async fn observe_cache<F: Future>(call: F) -> (F::Output, bool) {
    let flag = Arc::new(AtomicBool::new(false));
    let output = SERVED_FROM_CACHE.scope(flag.clone(), call).await;
    (output, flag.load(Ordering::Relaxed))
}

/// Marks the call being observed (if any) as answered without an upstream call of its own.
pub(crate) fn note_served_from_cache() {
    // Outside `observe_cache` nobody asked: nothing to record.
    let _ = SERVED_FROM_CACHE.try_with(|flag| flag.store(true, Ordering::Relaxed));
}

/// A complete, buffered response.
#[derive(Debug, Clone, Default)]
pub struct BufferedResponse {
    /// The upstream's status code.
    pub status: StatusCode,
    /// The upstream's response headers; secret values in them are redacted before a caller
    /// sees the response (so are any in the body).
    pub headers: HeaderMap,
    /// The whole body, read to its end (within the destination's size limit).
    pub body: Bytes,
    /// Which secret redactor last found nothing in this response. Clones share it, so a cached
    /// range is scanned once per set of secret values, not on every hit.
    pub scanned_clean: ScanMemo,
}

/// The id of the last [`Redactor`](crate::redact::Redactor) that scanned a response and found
/// no secret in it (0: none yet). Shared by a response's clones; the response's bytes never
/// change, so the same redactor would find nothing again.
#[derive(Debug, Clone, Default)]
pub struct ScanMemo(Arc<AtomicU64>);

impl ScanMemo {
    /// True when the redactor `id` already found this response clean.
    pub fn is_clean_for(&self, id: u64) -> bool {
        id != 0 && self.0.load(Ordering::Acquire) == id
    }

    /// Notes that the redactor `id` found this response clean.
    pub fn mark_clean_for(&self, id: u64) {
        self.0.store(id, Ordering::Release);
    }
}

/// A cached response and how long it may be served.
#[derive(Debug, Clone)]
pub struct CacheEntry {
    /// The stored response (as received, before redaction); each hit is served a clone.
    pub response: Arc<BufferedResponse>,
    /// How long after insertion the entry expires (see [`cache_ttl`]).
    pub ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, CacheEntry> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &CacheEntry,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The shared response cache.
pub type ResponseCache = Cache<String, CacheEntry>;

/// A cache of at most `capacity_bytes` of responses (key, headers and body counted), each
/// expiring after its own TTL.
pub fn new_cache(capacity_bytes: u64) -> ResponseCache {
    Cache::builder()
        .max_capacity(capacity_bytes)
        .weigher(|key: &String, entry: &CacheEntry| {
            let response = &entry.response;
            let headers: usize = response
                .headers
                .iter()
                .map(|(name, value)| name.as_str().len() + value.len() + 32)
                .sum();
            let weight = key.len() + headers + response.body.len() + 128;
            u32::try_from(weight).unwrap_or(u32::MAX)
        })
        .expire_after(PerEntryTtl)
        .build()
}

/// `response` as it should be kept for long: a body received in one piece may be a slice of
/// the connection's larger read buffer, which would stay allocated as long as the slice does,
/// so the body is copied into an allocation of its own size (the cache's weigher counts the
/// body's length, and this makes that the truth).
pub fn compact(mut response: BufferedResponse) -> BufferedResponse {
    response.body = Bytes::copy_from_slice(&response.body);
    response
}

/// How long `response` may be cached: `max-age`/`s-maxage` when given, else `default_ttl`;
/// never for `no-store`, `no-cache`, `private`, or anything but 200.
pub fn cache_ttl(response: &BufferedResponse, default_ttl: Option<Duration>) -> Option<Duration> {
    if response.status != StatusCode::OK {
        return None;
    }
    let mut max_age = None;
    for value in response.headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            return None;
        };
        for directive in value
            .split(',')
            .map(|directive| directive.trim().to_ascii_lowercase())
        {
            if matches!(directive.as_str(), "no-store" | "no-cache" | "private") {
                return None;
            }
            if let Some(seconds) = directive
                .strip_prefix("s-maxage=")
                .or_else(|| directive.strip_prefix("max-age="))
            {
                max_age = seconds
                    .trim_matches('"')
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_secs)
                    .or(max_age);
            }
        }
    }
    max_age.or(default_ttl).filter(|ttl| !ttl.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, cache_control: Option<&str>) -> BufferedResponse {
        let mut headers = HeaderMap::new();
        if let Some(value) = cache_control {
            headers.insert(CACHE_CONTROL, value.parse().unwrap());
        }
        BufferedResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: Bytes::new(),
            ..BufferedResponse::default()
        }
    }

    #[test]
    fn honours_cache_control() {
        let default = Some(Duration::from_mins(1));
        assert_eq!(cache_ttl(&response(200, None), default), default);
        assert_eq!(cache_ttl(&response(200, None), None), None);
        assert_eq!(
            cache_ttl(&response(200, Some("public, max-age=2678400")), default),
            Some(Duration::from_hours(744)) // 31 days
        );
        assert_eq!(cache_ttl(&response(200, Some("no-store")), default), None);
        assert_eq!(cache_ttl(&response(200, Some("max-age=0")), default), None);
        assert_eq!(cache_ttl(&response(503, None), default), None);
    }
}
