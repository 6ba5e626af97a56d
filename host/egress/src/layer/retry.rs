//! Layer 7, retries: whether and when to try again is a [`RetryPolicy`]'s decision; the layer
//! adds what holds for every policy: a retry must fit before the deadline, be paid from the
//! destination's retry budget (tower's `TpsBudget`) and get its own breaker permit.

use super::{Resolved, Stage, Try};
use crate::{
    EgressError, Rule,
    cache::BufferedResponse,
    retry::{full_jitter_delay, is_idempotent, is_retryable_status},
};
use bytes::Bytes;
use http::Request;
use std::time::Duration;
use tower::retry::budget::Budget;

/// Decides whether an attempt's outcome is worth another try, and after how long.
pub trait RetryPolicy: Send + Sync {
    /// The delay before retry number `retries` (0-based) of `request` to `rule`, or `None`
    /// to give `outcome` to the caller.
    fn retry_after(
        &self,
        rule: &Rule,
        request: &Request<Bytes>,
        outcome: &Result<BufferedResponse, EgressError>,
        retries: u32,
    ) -> Option<Duration>;
}

/// The gateway's policy: safe requests (idempotent methods, or carrying the destination's
/// idempotency header) on transient failures and 429/502/503/504, any request when nothing was
/// sent; up to `max-retries`, exponential backoff with full jitter.
pub struct JitteredRetry;

impl RetryPolicy for JitteredRetry {
    fn retry_after(
        &self,
        rule: &Rule,
        request: &Request<Bytes>,
        outcome: &Result<BufferedResponse, EgressError>,
        retries: u32,
    ) -> Option<Duration> {
        let policy = &rule.policy;
        let idempotent = is_idempotent(request.method())
            || rule
                .config
                .idempotency_header
                .as_ref()
                .is_some_and(|header| request.headers().contains_key(header.as_str()));
        let retryable = match outcome {
            Ok(response) => is_retryable_status(response.status.as_u16()) && idempotent,
            Err(EgressError::Attempt(error)) => {
                error.is_transient() && (idempotent || error.nothing_sent())
            }
            Err(_) => false,
        };
        (retryable && retries < policy.max_retries)
            .then(|| full_jitter_delay(policy.retry_base, policy.retry_cap, retries))
    }
}

/// Repeats attempts as its policy says.
pub struct Retry<P, S> {
    policy: P,
    inner: S,
}

impl<P, S> Retry<P, S> {
    /// Retries `inner` as `policy` says.
    pub fn new(policy: P, inner: S) -> Self {
        Self { policy, inner }
    }
}

impl<'a, P: RetryPolicy, S: Stage<Try<'a>>> Stage<Resolved<'a>> for Retry<P, S> {
    async fn send(&self, resolved: Resolved<'a>) -> Result<BufferedResponse, EgressError> {
        let Resolved {
            routed,
            destination,
            permit,
            addresses,
        } = resolved;
        destination.budget.deposit();
        let mut retries = 0;
        let mut permit = Some(permit);
        loop {
            let permit = match permit.take() {
                Some(permit) => permit,
                None => destination.admit()?,
            };
            let outcome = self
                .inner
                .send(Try {
                    caller: routed.caller,
                    rule: routed.rule,
                    request: routed.request.clone(),
                    overrides: routed.overrides,
                    deadline: routed.deadline,
                    addresses: addresses.clone(),
                    permit,
                })
                .await;
            if let Some(delay) =
                self.policy
                    .retry_after(routed.rule, &routed.request, &outcome, retries)
                && delay < routed.remaining()
                && destination.budget.withdraw()
            {
                destination.metrics.retried();
                tokio::time::sleep(delay).await;
                retries += 1;
                continue;
            }
            return outcome;
        }
    }
}
