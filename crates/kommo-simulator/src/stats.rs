//! Request counters, the request log and the strict rate window. The window
//! exists because
//! Kommo's counting is undocumented: the simulator takes the strictest
//! reading (no closed one-second window, wherever it starts, may hold more
//! than the limit), so a client that passes here passes there.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::kind::RecordKind;

/// Counters a test reads to check how a client behaved.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SimulatorStats {
    /// every HTTP request received
    pub requests: u64,
    /// `GET /api/v4/leads` requests (any answer)
    pub lead_requests: u64,
    /// `GET /api/v4/contacts` requests (any answer)
    pub contact_requests: u64,
    /// `GET /api/v4/companies` requests (any answer)
    pub company_requests: u64,
    pub responses_429: u64,
    pub responses_401: u64,
    /// most arrivals seen in any closed 1-second window `[t-1s, t]`
    pub max_requests_in_any_second: u64,
    /// most requests being answered at the same time (a client walking
    /// several windows at once shows more than 1 when answers are slow)
    pub max_in_flight: u64,
}

impl SimulatorStats {
    /// The `GET` requests of `kind`'s listing (any answer):
    /// `lead_requests`, `contact_requests` or `company_requests`.
    pub fn requests_of(&self, kind: RecordKind) -> u64 {
        match kind {
            RecordKind::Lead => self.lead_requests,
            RecordKind::Contact => self.contact_requests,
            RecordKind::Company => self.company_requests,
        }
    }

    /// Counts one `GET` of `kind`'s listing.
    pub(crate) fn count_request_of(&mut self, kind: RecordKind) {
        match kind {
            RecordKind::Lead => self.lead_requests += 1,
            RecordKind::Contact => self.contact_requests += 1,
            RecordKind::Company => self.company_requests += 1,
        }
    }
}

/// One request received, as [`crate::Simulator::request_log`]
/// lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestRecord {
    /// when it arrived
    pub at: Instant,
    /// the URI path, e.g. `/api/v4/leads`
    pub path: String,
    /// the raw (still percent-encoded) query, empty when none
    pub query: String,
    /// the status answered; 0 while being answered and for a dropped
    /// connection
    pub status: u16,
}

/// The most recent requests, oldest first, capped so a long demo run does
/// not grow without bound.
#[derive(Default)]
pub(crate) struct RequestLog {
    records: VecDeque<RequestRecord>,
    /// sequence number of `records[0]`
    first_seq: u64,
}

impl RequestLog {
    /// Records kept at most.
    const CAP: usize = 100_000;

    /// Logs an arrival (status 0) and returns its sequence number.
    pub(crate) fn arrive(&mut self, at: Instant, path: &str, query: &str) -> u64 {
        if self.records.len() >= Self::CAP {
            self.records.pop_front();
            self.first_seq += 1;
        }
        self.records.push_back(RequestRecord {
            at,
            path: path.to_string(),
            query: query.to_string(),
            status: 0,
        });
        self.first_seq + self.records.len() as u64 - 1
    }

    /// Sets the status answered to the request `seq` (if still kept).
    pub(crate) fn answered(&mut self, seq: u64, status: u16) {
        let idx = seq
            .checked_sub(self.first_seq)
            .and_then(|i| usize::try_from(i).ok());
        if let Some(r) = idx.and_then(|i| self.records.get_mut(i)) {
            r.status = status;
        }
    }

    pub(crate) fn records(&self) -> Vec<RequestRecord> {
        self.records.iter().cloned().collect()
    }
}

/// Arrival instants of the requests of the last second.
#[derive(Default)]
pub(crate) struct RateWindow {
    arrivals: VecDeque<Instant>,
}

impl RateWindow {
    /// Records an arrival at `at` and returns how many arrivals (this one
    /// included) lie in `[at - 1s, at]`. Arrivals are stamped when their
    /// handler starts, before it waits for the simulator's lock, so they may
    /// be recorded slightly out of order: each is kept in time order, and
    /// only arrivals more than two seconds older than the newest are dropped.
    pub(crate) fn arrive(&mut self, at: Instant) -> u64 {
        let newest = self.arrivals.back().copied().map_or(at, |t| t.max(at));
        while self
            .arrivals
            .front()
            .is_some_and(|t| newest.saturating_duration_since(*t) > Duration::from_secs(2))
        {
            self.arrivals.pop_front();
        }
        let position = self.arrivals.partition_point(|t| *t <= at);
        self.arrivals.insert(position, at);
        self.arrivals
            .iter()
            .take(position + 1)
            .rev()
            .take_while(|t| at.saturating_duration_since(**t) <= Duration::from_secs(1))
            .count() as u64
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

    #[test]
    fn an_arrival_recorded_late_counts_against_the_second_it_came_in() {
        let mut w = RateWindow::default();
        let t0 = Instant::now();
        assert_eq!(w.arrive(t0 + Duration::from_millis(900)), 1);
        // came in at t0 but its handler reached the lock after the one above
        assert_eq!(w.arrive(t0), 1);
        assert_eq!(w.arrive(t0 + Duration::from_millis(1000)), 3);
        assert_eq!(w.arrive(t0 + Duration::from_millis(1950)), 2);
    }

    #[test]
    fn log_keeps_sequence_numbers_past_the_cap() {
        let mut log = RequestLog::default();
        let t0 = Instant::now();
        let first = log.arrive(t0, "/a", "");
        log.answered(first, 200);
        assert_eq!(log.records()[0].status, 200);
        for _ in 0..RequestLog::CAP {
            log.arrive(t0, "/b", "x=1");
        }
        let last = log.arrive(t0, "/c", "");
        assert_eq!(last, RequestLog::CAP as u64 + 1);
        log.answered(first, 500); // dropped from the log: ignored
        log.answered(last, 429);
        let records = log.records();
        assert_eq!(records.len(), RequestLog::CAP);
        assert_eq!(records[0].path, "/b");
        assert_eq!(records.last().map(|r| r.status), Some(429));
    }
}
