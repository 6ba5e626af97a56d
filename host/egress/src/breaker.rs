//! A per-destination circuit breaker: closed → open on a failure rate (or a slow-call rate) over
//! a window of recent calls; open → half-open after a pause; half-open lets a few probes
//! through and closes when they all succeed, or opens again on the first failure.
//!
//! Every permitted call ends in exactly one recorded outcome: a [`Permit`] dropped without
//! [`Permit::record`] (the caller's future was cancelled, typically by the decision's
//! deadline) counts as a failure, so a hanging upstream opens the breaker like a refusing one.
//! State changes are logged once each.

use crate::config::BreakerConfig;
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// The breaker's state, as reported in metrics (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; outcomes are counted over the window of recent calls.
    Closed,
    /// Calls are refused until the open pause is over.
    Open,
    /// The pause is over: a few probe calls go through to decide between closed and open.
    HalfOpen,
}

/// How one call went, as the breaker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// A usable answer, in time.
    Success,
    /// A usable answer, slower than the slow-call threshold.
    Slow,
    /// No usable answer: refused, unresolvable, timed out, reset, 5xx/429, cancelled.
    Failure,
}

enum State {
    Closed { outcomes: VecDeque<CallOutcome> },
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

/// A circuit breaker for one destination. Clones share one state, so a [`Permit`] owns its
/// breaker and can travel with a request through the gateway's layers.
#[derive(Clone)]
pub struct CircuitBreaker(Arc<Shared>);

/// The state behind a [`CircuitBreaker`].
struct Shared {
    /// The destination, for log lines.
    name: String,
    config: BreakerConfig,
    state: Mutex<State>,
}

/// Permission to make one call. Report its outcome with [`Permit::record`]; dropping it
/// unrecorded counts as a failure.
#[derive(Debug)]
#[must_use = "report the call's outcome with Permit::record"]
pub struct Permit {
    breaker: CircuitBreaker,
    probe: bool,
    started: Instant,
    recorded: bool,
}

impl std::fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("name", &self.0.name)
            .field("state", &self.state())
            .finish()
    }
}

impl Permit {
    /// Reports how the call went: `usable` when it got an answer the caller can use. A usable
    /// answer slower than the slow-call threshold counts as slow.
    pub fn record(mut self, usable: bool) {
        self.recorded = true;
        let outcome = match (usable, self.breaker.0.config.slow_call) {
            (false, _) => CallOutcome::Failure,
            (true, Some(threshold)) if self.started.elapsed() > threshold => CallOutcome::Slow,
            (true, _) => CallOutcome::Success,
        };
        self.breaker.record(self.probe, outcome);
    }
}

impl Permit {
    /// Gives the permit back without an outcome: the gateway refused the call itself (an SSRF
    /// refusal, say), which says nothing about the upstream.
    pub fn discard(mut self) {
        self.recorded = true;
        if self.probe
            && let State::HalfOpen { in_flight, .. } = &mut *self.breaker.lock()
        {
            *in_flight = in_flight.saturating_sub(1);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.recorded {
            self.breaker.record(self.probe, CallOutcome::Failure);
        }
    }
}

/// The breaker refused the call.
#[derive(Debug, Clone, Copy)]
pub struct Open {
    /// How long until probes are let through (zero when half-open probes are all in flight).
    pub retry_after: Duration,
}

impl CircuitBreaker {
    /// A closed breaker for the destination called `name` (used in log lines).
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Self {
        Self(Arc::new(Shared {
            name: name.into(),
            config,
            state: Mutex::new(State::Closed {
                outcomes: VecDeque::new(),
            }),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock::lock(&self.0.state)
    }

    /// The current state (an open breaker whose pause is over reports half-open).
    pub fn state(&self) -> BreakerState {
        match &*self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() < *until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call. Refusals cost a lock and a clock read: an open breaker answers in
    /// microseconds.
    pub fn try_acquire(&self) -> Result<Permit, Open> {
        let mut state = self.lock();
        let now = Instant::now();
        if let State::Open { until } = *state {
            if now < until {
                return Err(Open {
                    retry_after: until - now,
                });
            }
            *state = State::HalfOpen {
                in_flight: 0,
                successes: 0,
            };
            tracing::info!(destination = %self.0.name, "circuit breaker half-open: letting probes through");
        }
        let probe = match &mut *state {
            State::Closed { .. } => false,
            State::HalfOpen {
                in_flight,
                successes,
            } => {
                if *in_flight + *successes >= self.0.config.half_open_probes.max(1) {
                    return Err(Open {
                        retry_after: Duration::ZERO,
                    });
                }
                *in_flight += 1;
                true
            }
            State::Open { .. } => unreachable!("handled above"),
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            started: now,
            recorded: false,
        })
    }

    fn open(&self, state: &mut State, why: &str) {
        *state = State::Open {
            until: Instant::now() + self.0.config.open_for,
        };
        tracing::warn!(
            destination = %self.0.name,
            open_for = ?self.0.config.open_for,
            "circuit breaker open: {why}; calls fail fast until probes succeed"
        );
    }

    fn record(&self, probe: bool, outcome: CallOutcome) {
        let mut state = self.lock();
        let window = self.0.config.minimum_calls.max(1) as usize;
        match &mut *state {
            State::Closed { outcomes } => {
                outcomes.push_back(outcome);
                while outcomes.len() > window {
                    outcomes.pop_front();
                }
                if outcomes.len() < window {
                    return;
                }
                let calls = outcomes.len() as f32;
                let failures = outcomes
                    .iter()
                    .filter(|outcome| **outcome == CallOutcome::Failure)
                    .count();
                let slow = outcomes
                    .iter()
                    .filter(|outcome| **outcome == CallOutcome::Slow)
                    .count();
                if failures as f32 >= self.0.config.failure_rate * calls {
                    let why = format!("{failures} of the last {window} calls failed");
                    self.open(&mut state, &why);
                } else if slow as f32 >= self.0.config.slow_call_rate * calls {
                    let why = format!("{slow} of the last {window} calls were slow");
                    self.open(&mut state, &why);
                }
            }
            State::HalfOpen {
                in_flight,
                successes,
            } if probe => {
                *in_flight = in_flight.saturating_sub(1);
                if outcome == CallOutcome::Success {
                    *successes += 1;
                    if *successes >= self.0.config.half_open_probes.max(1) {
                        *state = State::Closed {
                            outcomes: VecDeque::new(),
                        };
                        tracing::info!(destination = %self.0.name, "circuit breaker closed: probes succeeded");
                    }
                } else {
                    self.open(&mut state, "a half-open probe failed");
                }
            }
            // A call that started before the breaker opened: its outcome is stale.
            State::HalfOpen { .. } | State::Open { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for: Duration) -> CircuitBreaker {
        CircuitBreaker::new(
            "test",
            BreakerConfig {
                failure_rate: 0.5,
                minimum_calls: 4,
                open_for,
                half_open_probes: 2,
                slow_call: Some(Duration::from_millis(20)),
                slow_call_rate: 1.0,
            },
        )
    }

    fn call(breaker: &CircuitBreaker, success: bool) -> bool {
        match breaker.try_acquire() {
            Ok(permit) => {
                permit.record(success);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn opens_on_failure_rate_after_minimum_calls() {
        let breaker = breaker(Duration::from_mins(1));
        assert!(call(&breaker, false));
        assert!(call(&breaker, false));
        assert!(call(&breaker, true));
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "not enough calls yet"
        );
        assert!(call(&breaker, true));
        assert_eq!(breaker.state(), BreakerState::Open, "2 of 4 failed");
        assert!(!call(&breaker, true), "open breakers refuse calls");
    }

    #[test]
    fn a_cancelled_call_counts_as_a_failure() {
        let breaker = breaker(Duration::from_mins(1));
        for _ in 0..4 {
            drop(breaker.try_acquire().unwrap());
        }
        assert_eq!(breaker.state(), BreakerState::Open);
    }

    #[test]
    fn slow_successes_open_it_too() {
        let breaker = breaker(Duration::from_mins(1));
        for _ in 0..4 {
            let permit = breaker.try_acquire().unwrap();
            std::thread::sleep(Duration::from_millis(25));
            permit.record(true);
        }
        assert_eq!(breaker.state(), BreakerState::Open, "every call was slow");
    }

    #[test]
    fn half_open_probes_close_or_reopen() {
        let breaker = breaker(Duration::from_millis(200));
        for _ in 0..4 {
            call(&breaker, false);
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(250));
        let first = breaker.try_acquire().unwrap();
        let second = breaker.try_acquire().unwrap();
        assert!(breaker.try_acquire().is_err(), "only two probes at a time");
        first.record(true);
        second.record(true);
        assert_eq!(breaker.state(), BreakerState::Closed);

        for _ in 0..4 {
            call(&breaker, false);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert!(call(&breaker, false));
        assert_eq!(
            breaker.state(),
            BreakerState::Open,
            "a failed probe reopens"
        );
    }
}
