//! One rule for a poisoned lock, in one place: a panic in one task never
//! cascades into every task that shares a mutex with it; the data behind
//! the lock is used as it was left (each guarded value is valid after any
//! of its updates).

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex even when another thread panicked while holding it.
pub trait LockAnyway<T> {
    fn lock_anyway(&self) -> MutexGuard<'_, T>;
}

impl<T> LockAnyway<T> for Mutex<T> {
    fn lock_anyway(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|e| e.into_inner())
    }
}
