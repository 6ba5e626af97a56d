//! Per-decision limits: deadline, memory cap, input and output size caps.

use serde::Deserialize;
use std::time::Duration;

/// What a single decision may use. Defaults suit an interactive request.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeLimits {
    /// Wall-clock budget of one decision, instantiation included (`deadline-ms`).
    #[serde(rename = "deadline-ms", with = "millis")]
    pub deadline: Duration,
    /// Largest linear memory one instance may grow to, in bytes (`memory-bytes`).
    #[serde(rename = "memory-bytes")]
    pub memory_bytes: usize,
    /// Largest password (or token) handed to a plugin, in bytes; larger inputs are refused by
    /// the host before any plugin runs (`max-input-bytes`).
    #[serde(rename = "max-input-bytes")]
    pub max_input_bytes: usize,
    /// Most findings and attributes accepted from one decision (`max-findings`).
    #[serde(rename = "max-findings")]
    pub max_findings: usize,
    /// Longest finding code, message or attribute text accepted, in bytes (`max-text-bytes`).
    #[serde(rename = "max-text-bytes")]
    pub max_text_bytes: usize,
    /// Granularity of the deadline: the epoch ticker's period (`epoch-tick-ms`).
    #[serde(rename = "epoch-tick-ms", with = "millis")]
    pub epoch_tick: Duration,
    /// Most instances alive at once, across all plugins (`max-concurrent-instances`). Each slot
    /// gets a share of it (`max-concurrent-decisions` per slot), so one slot can never take
    /// the instances the others need.
    #[serde(rename = "max-concurrent-instances")]
    pub max_concurrent_instances: u32,
    /// How long a decision waits for its slot's share to free up before it fails with
    /// `plugin-overloaded` and the slot's fail policy applies (`queue-ms`).
    #[serde(rename = "queue-ms", with = "millis")]
    pub queue_timeout: Duration,
}

impl Default for RuntimeLimits {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(1),
            memory_bytes: 32 << 20,
            max_input_bytes: 16 << 10,
            max_findings: 32,
            max_text_bytes: 1024,
            epoch_tick: Duration::from_millis(5),
            max_concurrent_instances: 256,
            queue_timeout: Duration::from_millis(50),
        }
    }
}

impl RuntimeLimits {
    /// The default share of the instance pool of each of `slots` slots: together they leave
    /// one share free for loads (info and smoke decisions of candidates).
    pub fn default_slot_share(&self, slots: usize) -> u32 {
        let slots = u32::try_from(slots).unwrap_or(u32::MAX).saturating_add(1);
        (self.max_concurrent_instances / slots).max(1)
    }

    /// The deadline in epoch ticks: rounded up, plus one. The tick in progress when a decision
    /// starts is already partly over, so counting only whole ticks could stop a plugin up to
    /// one tick before its deadline; with the extra tick it stops at most one tick after.
    pub fn deadline_ticks(&self) -> u64 {
        let tick = self.epoch_tick.as_nanos().max(1);
        self.deadline.as_nanos().div_ceil(tick) as u64 + 1
    }
}

mod millis {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        u64::deserialize(deserializer).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_never_cut_short_by_the_tick_in_progress() {
        let limits = RuntimeLimits {
            deadline: Duration::from_millis(200),
            epoch_tick: Duration::from_millis(5),
            ..RuntimeLimits::default()
        };
        assert_eq!(limits.deadline_ticks(), 41);
        let tiny = RuntimeLimits {
            deadline: Duration::from_millis(1),
            ..limits
        };
        assert_eq!(tiny.deadline_ticks(), 2);
    }
}
