//! Counters of what Kommo answered, kept by the client for the metrics
//! endpoint: how many 429s throttled us, how many requests were retried, and
//! how many answers were successes (which proves the token was accepted).
//!
//! They live beside the client, not in the sync, because only the client sees
//! every answer, retries included; the sent-request count stays in the client.

use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::StatusCode;

/// Answers counted since the client was built; shared by its clones.
#[derive(Debug, Default)]
pub struct ResponseCounts {
    throttled: AtomicU64,
    accepted: AtomicU64,
    retries: AtomicU64,
}

impl ResponseCounts {
    /// Counts one answer with `status`.
    pub(super) fn note(&self, status: StatusCode) {
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.throttled.fetch_add(1, Ordering::Relaxed);
        } else if status.is_success() {
            self.accepted.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one retry of a request (after a 429 or a transient failure).
    pub(super) fn note_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// Answers `429 Too Many Requests`.
    pub fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::Relaxed)
    }

    /// Successful answers (2xx, 204 included): each one proves the token was
    /// accepted when it was sent.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Requests sent again after a 429 or a transient failure.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_429s_successes_and_retries_apart() {
        let counts = ResponseCounts::default();
        for status in [200, 204, 429, 401, 500, 429] {
            counts.note(StatusCode::from_u16(status).unwrap());
        }
        counts.note_retry();
        assert_eq!(
            (counts.throttled(), counts.accepted(), counts.retries()),
            (2, 2, 1)
        );
    }
}
