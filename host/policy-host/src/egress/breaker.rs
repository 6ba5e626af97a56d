//! A per-destination circuit breaker: closed → open on a failure rate over a window of recent
//! calls; open → half-open after a pause; half-open lets a few probes through and closes when
//! they all succeed, or opens again on the first failure.

use super::config::BreakerConfig;
use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};

/// The breaker's state, as reported in metrics (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

enum State {
    Closed { outcomes: VecDeque<bool> },
    Open { until: Instant },
    HalfOpen { in_flight: u32, successes: u32 },
}

/// A circuit breaker for one destination.
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

/// Permission to make one call; report its outcome with [`CircuitBreaker::record`].
#[derive(Debug)]
#[must_use = "report the call's outcome with CircuitBreaker::record"]
pub struct Permit {
    probe: bool,
}

/// The breaker refused the call.
#[derive(Debug, Clone, Copy)]
pub struct Open {
    /// How long until probes are let through (zero when half-open probes are all in flight).
    pub retry_after: Duration,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            state: Mutex::new(State::Closed {
                outcomes: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state (an open breaker whose pause is over reports half-open).
    pub fn state(&self) -> BreakerState {
        match &*self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { until } if Instant::now() < *until => BreakerState::Open,
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Asks to make a call.
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
        }
        match &mut *state {
            State::Closed { .. } => Ok(Permit { probe: false }),
            State::HalfOpen {
                in_flight,
                successes,
            } => {
                if *in_flight + *successes >= self.config.half_open_probes.max(1) {
                    return Err(Open {
                        retry_after: Duration::ZERO,
                    });
                }
                *in_flight += 1;
                Ok(Permit { probe: true })
            }
            State::Open { .. } => unreachable!("handled above"),
        }
    }

    /// Reports how a permitted call went.
    pub fn record(&self, permit: Permit, success: bool) {
        let mut state = self.lock();
        let window = self.config.minimum_calls.max(1) as usize;
        match &mut *state {
            State::Closed { outcomes } => {
                outcomes.push_back(success);
                while outcomes.len() > window {
                    outcomes.pop_front();
                }
                let failures = outcomes.iter().filter(|ok| !**ok).count();
                if outcomes.len() >= window
                    && failures as f32 >= self.config.failure_rate * outcomes.len() as f32
                {
                    *state = State::Open {
                        until: Instant::now() + self.config.open_for,
                    };
                }
            }
            State::HalfOpen {
                in_flight,
                successes,
            } if permit.probe => {
                *in_flight = in_flight.saturating_sub(1);
                if !success {
                    *state = State::Open {
                        until: Instant::now() + self.config.open_for,
                    };
                } else {
                    *successes += 1;
                    if *successes >= self.config.half_open_probes.max(1) {
                        *state = State::Closed {
                            outcomes: VecDeque::new(),
                        };
                    }
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
        CircuitBreaker::new(BreakerConfig {
            failure_rate: 0.5,
            minimum_calls: 4,
            open_for,
            half_open_probes: 2,
        })
    }

    fn call(breaker: &CircuitBreaker, success: bool) -> bool {
        match breaker.try_acquire() {
            Ok(permit) => {
                breaker.record(permit, success);
                true
            }
            Err(_) => false,
        }
    }

    #[test]
    fn opens_on_failure_rate_after_minimum_calls() {
        let breaker = breaker(Duration::from_secs(60));
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
        breaker.record(first, true);
        breaker.record(second, true);
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
