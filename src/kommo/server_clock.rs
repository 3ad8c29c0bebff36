//! Kommo's clock, as the `Date` header of its last answer tells it: the
//! walks bound their listings by Kommo's now, not ours (clocks differ).

use std::sync::{Arc, Mutex};

use crate::poison::LockAnyway;
use reqwest::header::{DATE, HeaderMap};

/// Kommo's clock as its last `Date` header told it.
#[derive(Clone, Copy, Debug)]
struct ServerTime {
    /// Unix seconds in the header.
    unix: i64,
    /// When the answer carrying it arrived.
    received: tokio::time::Instant,
}

/// Kommo's clock, shared by the clones of a client.
#[derive(Clone, Debug, Default)]
pub(super) struct ServerClock(Arc<Mutex<Option<ServerTime>>>);

impl ServerClock {
    /// Kommo's now in Unix seconds, from the `Date` header of its last answer
    /// plus the time since; `None` before any answer carried one.
    pub(super) fn now(&self) -> Option<i64> {
        let time = (*self.0.lock_anyway())?;
        let elapsed = i64::try_from(time.received.elapsed().as_secs()).unwrap_or(i64::MAX);
        Some(time.unix.saturating_add(elapsed))
    }

    /// Notes the `Date` of an answer, if it has one.
    pub(super) fn note(&self, headers: &HeaderMap) {
        if let Some(unix) = header_date(headers) {
            *self.0.lock_anyway() = Some(ServerTime {
                unix,
                received: tokio::time::Instant::now(),
            });
        }
    }
}

/// The `Date` header in Unix seconds.
pub(super) fn header_date(headers: &HeaderMap) -> Option<i64> {
    headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_http_date)
}

/// Parses an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`) to Unix seconds.
pub(super) fn parse_http_date(text: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc2822(text.trim())
        .ok()
        .map(|t| t.timestamp())
}
