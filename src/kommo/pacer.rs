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
//!
//! Requests wait for the limiter one at a time, and a request of a
//! [`Lane::Chain`] (a listing read page after page, each page asked once the
//! one before it is answered: events, structure, account) goes before the
//! waiting requests of the [`Lane::Window`]s (record listings, of which a
//! full pass keeps several in flight). A chain sends one request per round
//! trip at most, so it never starves the windows; without the lane it got
//! one slot in five while the windows were busy and was left to end the
//! backfill alone, one page per round trip.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::poison::LockAnyway;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Which requests go first when several wait for the pacer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// A page of a listing read one page at a time: goes first.
    Chain,
    /// A page of a record listing, of which several are in flight.
    Window,
}

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
    turns: Arc<Turns>,
}

/// Who waits for the limiter next.
#[derive(Default)]
struct Turns {
    /// Held by the one request waiting for the limiter; FIFO.
    turn: tokio::sync::Mutex<()>,
    /// Chain requests waiting for their turn or for the limiter.
    chains_waiting: AtomicUsize,
    /// Signalled when no chain request waits any more.
    chains_done: Notify,
}

/// A chain request counted as waiting, until it is sent or dropped.
struct ChainWaiting<'a>(&'a Turns);

impl Drop for ChainWaiting<'_> {
    fn drop(&mut self) {
        if self.0.chains_waiting.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.chains_done.notify_waiters();
        }
    }
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
            turns: Arc::default(),
        }
    }

    /// Waits until a request of `lane` may be sent: through the limiter and
    /// past any pause, including one imposed while this request waited in
    /// the limiter.
    pub async fn ready(&self, lane: Lane) {
        loop {
            self.wait_for_pause().await;
            {
                let _chain = (lane == Lane::Chain).then(|| {
                    self.turns.chains_waiting.fetch_add(1, Ordering::AcqRel);
                    ChainWaiting(&self.turns)
                });
                let _turn = self.take_turn(lane).await;
                self.limiter.until_ready().await;
            }
            if !self.is_paused() {
                return;
            }
        }
    }

    /// The turn to wait for the limiter; a window request gives it up while
    /// a chain request waits.
    async fn take_turn(&self, lane: Lane) -> tokio::sync::MutexGuard<'_, ()> {
        let turns = &*self.turns;
        loop {
            if lane == Lane::Window {
                let done = turns.chains_done.notified();
                tokio::pin!(done);
                done.as_mut().enable();
                if turns.chains_waiting.load(Ordering::Acquire) > 0 {
                    done.await;
                    continue;
                }
            }
            let turn = turns.turn.lock().await;
            if lane == Lane::Chain || turns.chains_waiting.load(Ordering::Acquire) == 0 {
                return turn;
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
        pacer.ready(Lane::Window).await; // the first request goes at once
        let waiting = {
            let pacer = pacer.clone();
            tokio::spawn(async move {
                pacer.ready(Lane::Window).await;
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

    #[tokio::test]
    async fn a_chain_request_goes_before_the_window_requests_waiting_before_it() {
        // 20/s: about 51 ms between requests (governor keeps real time).
        let pacer = Pacer::new(NonZeroU32::new(20).unwrap());
        pacer.ready(Lane::Window).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let send = |lane: Lane, name: &'static str| {
            let pacer = pacer.clone();
            let order = order.clone();
            tokio::spawn(async move {
                pacer.ready(lane).await;
                order.lock_anyway().push(name);
            })
        };
        let mut waiting: Vec<_> = (0..4).map(|_| send(Lane::Window, "window")).collect();
        tokio::task::yield_now().await;
        waiting.push(send(Lane::Chain, "chain"));
        for task in waiting {
            task.await.unwrap();
        }
        let order = order.lock_anyway().clone();
        // The window already waiting in the limiter keeps its slot; the
        // chain takes the next one.
        let chain_at = order.iter().position(|n| *n == "chain").unwrap();
        assert!(chain_at <= 1, "sent in this order: {order:?}");
        assert_eq!(order.len(), 5);
    }

    #[tokio::test]
    async fn a_chain_request_dropped_while_waiting_lets_the_windows_go() {
        let pacer = Pacer::new(NonZeroU32::new(20).unwrap());
        pacer.ready(Lane::Window).await;
        let chain = {
            let pacer = pacer.clone();
            tokio::spawn(async move { pacer.ready(Lane::Chain).await })
        };
        tokio::task::yield_now().await;
        chain.abort();
        let _ = chain.await;
        let window = tokio::time::timeout(Duration::from_secs(5), pacer.ready(Lane::Window)).await;
        assert!(
            window.is_ok(),
            "a window request waited on a chain request that was dropped"
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
