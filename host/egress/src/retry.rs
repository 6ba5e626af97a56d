//! When to retry, and how long to wait: exponential backoff with full jitter.

use http::Method;
use std::time::Duration;

/// The delay before retry number `retry` (0-based): uniformly random in
/// `[0, min(cap, base × 2^retry))` — "full jitter", so that clients that failed together don't
/// retry together.
pub fn full_jitter_delay(base: Duration, cap: Duration, retry: u32) -> Duration {
    let ceiling = base
        .saturating_mul(2u32.saturating_pow(retry.min(20)))
        .min(cap);
    let nanos = ceiling.as_nanos().min(u128::from(u64::MAX)) as u64;
    if nanos == 0 {
        Duration::ZERO
    } else {
        Duration::from_nanos(fastrand::u64(0..nanos))
    }
}

/// Methods that are safe to repeat (RFC 9110 §9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// Response statuses worth another try: the upstream or something in front of it is
/// overloaded or briefly unavailable.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_the_growing_ceiling_and_the_cap() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_millis(250);
        for _ in 0..200 {
            assert!(full_jitter_delay(base, cap, 0) < Duration::from_millis(100));
            assert!(full_jitter_delay(base, cap, 1) < Duration::from_millis(200));
            assert!(full_jitter_delay(base, cap, 5) < cap);
        }
        let spread: std::collections::BTreeSet<_> =
            (0..50).map(|_| full_jitter_delay(base, cap, 3)).collect();
        assert!(spread.len() > 40, "delays are spread out, not synchronised");
    }

    #[test]
    fn only_safe_methods_and_transient_statuses() {
        assert!(is_idempotent(&Method::GET));
        assert!(!is_idempotent(&Method::POST));
        assert!(is_retryable_status(503));
        assert!(!is_retryable_status(500));
        assert!(!is_retryable_status(404));
    }
}
