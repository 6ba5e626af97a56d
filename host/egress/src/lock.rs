//! Locking a mutex whose holder may have panicked: the gateway's maps (breakers, pools) stay
//! usable, since every update to them is a single step that cannot be left half-done.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the data over from a holder that panicked.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
