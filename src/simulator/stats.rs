//! Request counters and the strict rate window. The window exists because
//! Kommo's counting is undocumented: the simulator takes the strictest
//! reading (no closed one-second window, wherever it starts, may hold more
//! than the limit), so a client that passes here passes there.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Counters a test reads to check how a client behaved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimulatorStats {
    /// every HTTP request received
    pub requests: u64,
    /// `GET /api/v4/leads` requests (any answer)
    pub lead_requests: u64,
    pub responses_429: u64,
    pub responses_401: u64,
    /// most arrivals seen in any closed 1-second window `[t-1s, t]`
    pub max_requests_in_any_second: u64,
    /// most requests being answered at the same time (a client walking
    /// several windows at once shows more than 1 when answers are slow)
    pub max_in_flight: u64,
}

/// Arrival instants of the requests of the last second.
#[derive(Default)]
pub(crate) struct RateWindow {
    arrivals: VecDeque<Instant>,
}

impl RateWindow {
    /// Records an arrival at `now` and returns how many arrivals (this one
    /// included) lie in `[now - 1s, now]`.
    pub(crate) fn arrive(&mut self, now: Instant) -> u64 {
        while self
            .arrivals
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > Duration::from_secs(1))
        {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(now);
        self.arrivals.len() as u64
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn window_is_closed_on_both_ends() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        assert_eq!(w.arrive(t0), 1);
        assert_eq!(w.arrive(t0 + Duration::from_millis(500)), 2);
        // exactly one second later: t0 still counts
        assert_eq!(w.arrive(t0 + Duration::from_secs(1)), 3);
        assert_eq!(w.arrive(t0 + Duration::from_millis(1001)), 3);
    }
}
