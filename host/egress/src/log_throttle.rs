//! Logs that do not flood: the first occurrence of a repeated failure is logged at once, then at
//! most one line per key per interval, carrying how many were suppressed since the last one.
//! An outage that fails ten thousand requests writes a handful of lines, not ten thousand.

use std::{
    collections::HashMap,
    sync::{LazyLock, Mutex},
    time::{Duration, Instant},
};

/// At most one line per key per this interval.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Keys remembered at once; past this the table starts over (keys come from configuration,
/// so this only guards against a bug).
const MAX_KEYS: usize = 10_000;

struct Entry {
    last_logged: Instant,
    suppressed: u64,
}

static ENTRIES: LazyLock<Mutex<HashMap<String, Entry>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Calls `log` with the number of occurrences suppressed since the last line, or counts this
/// occurrence as suppressed when a line for `key` was written less than [`INTERVAL`] ago.
pub fn warn_throttled(key: &str, log: impl FnOnce(u64)) {
    let now = Instant::now();
    let suppressed = {
        let mut entries = crate::lock::lock(&ENTRIES);
        if let Some(entry) = entries.get_mut(key) {
            if now.duration_since(entry.last_logged) < INTERVAL {
                entry.suppressed += 1;
                return;
            }
            let suppressed = entry.suppressed;
            entry.last_logged = now;
            entry.suppressed = 0;
            suppressed
        } else {
            if entries.len() >= MAX_KEYS {
                entries.clear();
            }
            entries.insert(
                key.to_owned(),
                Entry {
                    last_logged: now,
                    suppressed: 0,
                },
            );
            0
        }
    };
    log(suppressed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_within_the_interval_are_counted_not_logged() {
        let mut lines = Vec::new();
        for _ in 0..100 {
            warn_throttled("test-key-repeats", |suppressed| lines.push(suppressed));
        }
        assert_eq!(lines, [0], "one line for a burst");
        let mut other = Vec::new();
        warn_throttled("test-key-other", |suppressed| other.push(suppressed));
        assert_eq!(other, [0], "keys are independent");
    }
}
