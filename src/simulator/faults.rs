//! Faults the simulated server can answer with instead of the real answer:
//! the abuse block, the unpaid account, throttle bursts and a queue of
//! one-shot faults (empty or short pages, cut bodies, dropped connections,
//! 429s with or without `Retry-After`, nginx error pages). It exists because
//! a client must survive every edge `docs/kommo-api.md` lists, and each edge
//! has to be switchable from a test. This module decides *which* fault a
//! request gets; `http` renders it.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::DateTime;
use tokio::time::Instant;

/// Which requests a queued fault applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultScope {
    /// `GET /api/v4/leads`, whatever the query (listings, by id,
    /// `with=only_deleted`).
    Leads,
    /// `GET /api/v4/events`.
    Events,
    /// Every request, whatever its method and path.
    Any,
}

/// How a 429 states its pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfter {
    /// No `Retry-After` header (what users report Kommo sends).
    None,
    /// `Retry-After: <seconds>`.
    Seconds(u64),
    /// `Retry-After` as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`)
    /// this many seconds after the server's now.
    HttpDate(u64),
}

/// An answer given instead of the real one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `200 application/hal+json`: a valid HAL page with `_page`,
    /// `_links.self` and `_links.next` but an empty `_embedded.leads`
    /// (`_embedded.events` on `/api/v4/events`).
    EmptyLeads,
    /// `200` with the body `{}`.
    EmptyObject,
    /// `200`: the real page cut to half of its items (at least one dropped),
    /// without `_links.next`; `204` when the real page has 0 or 1 items.
    /// Requests that are not lists get their real answer.
    ShortPage,
    /// `200`: the real body cut in its middle (never valid JSON); a request
    /// whose real answer is empty gets a cut page (`{"_page":1,"_emb`).
    TruncatedBody,
    /// The connection is closed without any HTTP answer.
    DroppedConnection,
    /// `429` with an nginx HTML body and the given `Retry-After`.
    TooManyRequests(RetryAfter),
    /// `403` with nginx's HTML page (the abuse block).
    Blocked,
    /// `402` `application/problem+json` (account not paid).
    Unpaid,
    /// That status with an nginx HTML body; a code outside 200..=599
    /// answers 500.
    Status(u16),
}

/// What a request is, as far as fault scopes care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// `GET /api/v4/leads`
    Leads,
    /// `GET /api/v4/events`
    Events,
    /// anything else
    Other,
}

impl FaultScope {
    fn covers(self, kind: RequestKind) -> bool {
        match self {
            FaultScope::Leads => kind == RequestKind::Leads,
            FaultScope::Events => kind == RequestKind::Events,
            FaultScope::Any => true,
        }
    }
}

/// The faults of one `queue_faults` call.
struct Batch {
    scope: FaultScope,
    /// requests still to let through before the first fault
    skip: u64,
    faults: VecDeque<Fault>,
    /// queued by `fail_next_lead_requests`, which replaces its earlier batch
    replaceable: bool,
}

/// Every switchable fault, and the decision of which one a request gets.
#[derive(Default)]
pub(crate) struct Faults {
    blocked: bool,
    unpaid: bool,
    /// 429 for every request arriving before this instant
    throttle: Option<(Instant, RetryAfter)>,
    queue: VecDeque<Batch>,
}

impl Faults {
    pub(crate) fn set_blocked(&mut self, blocked: bool) {
        self.blocked = blocked;
    }

    pub(crate) fn set_unpaid(&mut self, unpaid: bool) {
        self.unpaid = unpaid;
    }

    /// 429 with `retry_after` for every request arriving in the next
    /// `duration` (replacing any running burst).
    pub(crate) fn throttle_for(&mut self, duration: Duration, retry_after: RetryAfter) {
        let now = Instant::now();
        let until = now
            .checked_add(duration)
            .or_else(|| now.checked_add(Duration::from_secs(10 * 365 * 86_400)))
            .unwrap_or(now);
        self.throttle = Some((until, retry_after));
    }

    /// Queues a batch after every earlier one.
    pub(crate) fn queue(&mut self, scope: FaultScope, skip: u64, faults: Vec<Fault>) {
        self.push(scope, skip, faults, false);
    }

    /// Replaces the batch of an earlier call of this method (if any is left)
    /// by `n` faults `Status(status)` on lead requests.
    pub(crate) fn replace_lead_failures(&mut self, n: u32, status: u16) {
        self.queue.retain(|b| !b.replaceable);
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.push(FaultScope::Leads, 0, vec![Fault::Status(status); n], true);
    }

    fn push(&mut self, scope: FaultScope, skip: u64, faults: Vec<Fault>, replaceable: bool) {
        if faults.is_empty() {
            return;
        }
        self.queue.push_back(Batch {
            scope,
            skip,
            faults: faults.into(),
            replaceable,
        });
    }

    /// The fault a request of `kind` arriving at `now` gets, if any, in the
    /// order block, unpaid, throttle burst, queued faults. A request is
    /// offered to the oldest unfinished batch whose scope covers it: that
    /// batch first lets its `skip` requests through, then answers one fault
    /// per request.
    pub(crate) fn decide(&mut self, kind: RequestKind, now: Instant) -> Option<Fault> {
        if self.blocked {
            return Some(Fault::Blocked);
        }
        if self.unpaid {
            return Some(Fault::Unpaid);
        }
        match self.throttle {
            Some((until, retry_after)) if now < until => {
                return Some(Fault::TooManyRequests(retry_after));
            }
            Some(_) => self.throttle = None,
            None => {}
        }
        let idx = self.queue.iter().position(|b| b.scope.covers(kind))?;
        let batch = &mut self.queue[idx];
        if batch.skip > 0 {
            batch.skip -= 1;
            return None;
        }
        let fault = batch.faults.pop_front();
        if batch.faults.is_empty() {
            self.queue.remove(idx);
        }
        fault
    }
}

/// Unix seconds as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the
/// form of the `Date` and `Retry-After` headers. Out-of-range times give
/// the epoch.
pub(crate) fn imf_fixdate(unix: i64) -> String {
    DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// The first half of `body` (cut on a character boundary, at least one
/// character, never all of a body longer than one character).
pub(crate) fn cut_in_middle(body: &str) -> &str {
    let mut cut = body.len() / 2;
    while cut > 0 && !body.is_char_boundary(cut) {
        cut -= 1;
    }
    if cut == 0 {
        cut = body.chars().next().map_or(0, char::len_utf8);
    }
    &body[..cut]
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn formats_imf_fixdate() {
        assert_eq!(imf_fixdate(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(imf_fixdate(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(imf_fixdate(i64::MAX), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    #[test]
    fn cuts_bodies_without_splitting_characters() {
        assert_eq!(cut_in_middle("{}"), "{");
        assert_eq!(cut_in_middle("{\"a\":1}"), "{\"a");
        assert_eq!(cut_in_middle("é"), "é");
        assert_eq!(cut_in_middle("aéé"), "a");
        assert_eq!(cut_in_middle(""), "");
    }

    #[test]
    fn batches_skip_then_fault_in_order_per_scope() {
        let mut f = Faults::default();
        let now = Instant::now();
        f.queue(
            FaultScope::Leads,
            1,
            vec![Fault::EmptyObject, Fault::Blocked],
        );
        f.queue(FaultScope::Any, 0, vec![Fault::Unpaid]);
        f.queue(FaultScope::Events, 0, vec![]);
        // events are not held up by the leads batch
        assert_eq!(f.decide(RequestKind::Events, now), Some(Fault::Unpaid));
        assert_eq!(f.decide(RequestKind::Events, now), None);
        f.queue(FaultScope::Any, 0, vec![Fault::Status(502)]);
        assert_eq!(f.decide(RequestKind::Leads, now), None, "skipped");
        assert_eq!(f.decide(RequestKind::Leads, now), Some(Fault::EmptyObject));
        assert_eq!(f.decide(RequestKind::Other, now), Some(Fault::Status(502)));
        assert_eq!(f.decide(RequestKind::Leads, now), Some(Fault::Blocked));
        assert_eq!(f.decide(RequestKind::Leads, now), None);

        f.replace_lead_failures(3, 503);
        f.replace_lead_failures(1, 500);
        assert_eq!(f.decide(RequestKind::Leads, now), Some(Fault::Status(500)));
        assert_eq!(f.decide(RequestKind::Leads, now), None);
        f.replace_lead_failures(2, 500);
        f.replace_lead_failures(0, 500);
        assert_eq!(f.decide(RequestKind::Leads, now), None, "0 cancels");
    }

    #[test]
    fn block_and_unpaid_come_before_the_queue() {
        let mut f = Faults::default();
        let now = Instant::now();
        f.queue(FaultScope::Any, 0, vec![Fault::EmptyObject]);
        f.set_unpaid(true);
        f.set_blocked(true);
        assert_eq!(f.decide(RequestKind::Other, now), Some(Fault::Blocked));
        f.set_blocked(false);
        assert_eq!(f.decide(RequestKind::Other, now), Some(Fault::Unpaid));
        f.set_unpaid(false);
        f.throttle_for(Duration::from_secs(60), RetryAfter::Seconds(3));
        assert_eq!(
            f.decide(RequestKind::Leads, now),
            Some(Fault::TooManyRequests(RetryAfter::Seconds(3)))
        );
        f.throttle_for(Duration::ZERO, RetryAfter::None);
        assert_eq!(
            f.decide(RequestKind::Leads, Instant::now()),
            Some(Fault::EmptyObject)
        );
        f.throttle_for(Duration::MAX, RetryAfter::None);
        assert!(f.decide(RequestKind::Leads, Instant::now()).is_some());
    }
}
