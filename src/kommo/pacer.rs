//! Pacing of every request to Kommo: one governor limiter that no request or
//! retry bypasses, plus a shared pause that a 429 imposes on the whole client.
//!
//! Kommo allows `requests_per_second` requests per second, and how it counts is
//! not documented, so the limiter assumes the strictest reading: no closed
//! one-second window, wherever it starts, may hold more than the limit.
//! `Quota::per_second(7)` would allow a burst of 7 and then one every 143 ms,
//! which puts 13 requests in one window; even a steady 143 ms spacing puts 8 in
//! a closed window. So the limiter allows no burst and spaces requests by
//! `(1 s + WINDOW_MARGIN) / limit`: `limit + 1` requests then always span more
//! than one second plus the margin, which absorbs network jitter.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::poison::LockAnyway;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Slack added to the one-second window when spacing requests, so that jitter
/// in when requests arrive cannot put `limit + 1` of them into one second: an
/// arrival may come this much later, against the one `limit` requests before
/// it, than it left. 25 ms keeps 97.6 % of the allowance (50 ms kept 95 %,
/// which left a 300 ms-latency backfill short of 93 % of the limit however
/// full the pacer was kept).
pub const WINDOW_MARGIN: Duration = Duration::from_millis(25);

/// The gap kept between two requests for a limit of `per_second`.
pub fn request_spacing(per_second: NonZeroU32) -> Duration {
    (Duration::from_secs(1) + WINDOW_MARGIN) / per_second.get()
}

/// Shared by every request of one client.
#[derive(Clone)]
pub struct Pacer {
    limiter: Arc<DefaultDirectRateLimiter>,
    paused_until: Arc<Mutex<Option<Instant>>>,
}

impl Pacer {
    /// A pacer for at most `per_second` requests in any one-second window.
    pub fn new(per_second: NonZeroU32) -> Pacer {
        let quota = Quota::with_period(request_spacing(per_second))
            .expect("spacing is never zero")
            .allow_burst(NonZeroU32::MIN);
        Pacer {
            limiter: Arc::new(RateLimiter::direct(quota)),
            paused_until: Arc::new(Mutex::new(None)),
        }
    }

    /// Waits until a request may be sent: through the limiter and past any
    /// pause, including one imposed while this request waited in the limiter.
    pub async fn ready(&self) {
        loop {
            self.wait_for_pause().await;
            self.limiter.until_ready().await;
            if !self.is_paused() {
                return;
            }
        }
    }

    fn paused_until(&self) -> Option<Instant> {
        *self.paused_until.lock_anyway()
    }

    fn is_paused(&self) -> bool {
        self.paused_until().is_some_and(|t| t > Instant::now())
    }

    async fn wait_for_pause(&self) {
        while let Some(t) = self.paused_until().filter(|t| *t > Instant::now()) {
            tokio::time::sleep_until(t).await;
        }
    }

    /// Holds every request of the client back for `delay` (after a 429, or
    /// while another process's requests may still be in Kommo's window).
    pub fn pause_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut guard = self.paused_until.lock_anyway();
        if guard.is_none_or(|t| t < until) {
            *guard = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_back_requests_already_waiting_in_the_limiter() {
        let pacer = Pacer::new(NonZeroU32::new(1).unwrap());
        let start = Instant::now();
        pacer.ready().await; // the first request goes at once
        let waiting = {
            let pacer = pacer.clone();
            tokio::spawn(async move {
                pacer.ready().await;
                Instant::now()
            })
        };
        tokio::task::yield_now().await;
        // While the second waits for the limiter, a 429 pauses the client.
        pacer.pause_for(Duration::from_secs(10));
        let sent_at = waiting.await.unwrap();
        assert!(
            sent_at >= start + Duration::from_secs(10),
            "sent {:?} after start, inside the pause",
            sent_at - start
        );
    }

    #[test]
    fn spacing_keeps_limit_plus_one_requests_over_a_second_apart() {
        for limit in [1u32, 2, 7, 10, 50] {
            let n = NonZeroU32::new(limit).unwrap();
            let span_of_limit_plus_one = request_spacing(n) * limit;
            assert!(
                span_of_limit_plus_one > Duration::from_secs(1),
                "limit {limit}: {span_of_limit_plus_one:?}"
            );
        }
    }
}
