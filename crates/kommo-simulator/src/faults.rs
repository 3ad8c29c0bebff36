//! Faults the simulated server can answer with instead of the real answer:
//! the abuse block, the unpaid account, throttle bursts and a queue of
//! one-shot faults (empty or short pages, cut bodies, ids sent as strings,
//! dropped connections, 429s with or without `Retry-After`, nginx error
//! pages), each aimed at one kind of listing or at every request. It exists
//! because a client must survive every edge `docs/kommo-api.md` lists, and
//! each edge has to be switchable from a test, on any listing. This module
//! decides *which* fault a request gets; `http` renders it.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::DateTime;
use tokio::time::Instant;

use super::directory;
use super::query::{is_id_filter, pairs};

/// Which requests a queued fault applies to: every request, every lead
/// request, or one kind of listing. A request is classified by its method,
/// path and query (keys percent-encoded or not); only `GET`s are listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultScope {
    /// `GET /api/v4/leads`, whatever the query (walks, crowded seconds,
    /// by id, `with=only_deleted`, and queries that are none of these).
    Leads,
    /// The keyset walks of the lead windows (and the newest-lead probe):
    /// `GET /api/v4/leads` whose first `order[...]` is `order[updated_at]`
    /// (`asc` or `desc`), without an id filter and without
    /// `with=only_deleted`.
    LeadWalk,
    /// The reads of a crowded second: `GET /api/v4/leads` whose first
    /// `order[...]` is `order[id]`, without an id filter and without
    /// `with=only_deleted` (e.g.
    /// `filter[updated_at][from]=T&filter[updated_at][to]=T&order[id]=asc&page=N`).
    CrowdedSecond,
    /// The deleted-leads listing: `GET /api/v4/leads` with a `with` list
    /// holding `only_deleted` (whatever its filters and order).
    DeletedLeads,
    /// Answers by id: `GET /api/v4/leads` with `filter[id]`,
    /// `filter[id][]` or `filter[id][N]`, without `with=only_deleted`.
    LeadsById,
    /// `GET /api/v4/events`.
    Events,
    /// `GET /api/v4/account` (one object, no list).
    Account,
    /// `GET /api/v4/leads/pipelines` (not paged; statuses embedded).
    Pipelines,
    /// `GET /api/v4/leads/custom_fields` (paged).
    CustomFields,
    /// `GET /api/v4/users` (paged).
    Users,
    /// `GET /api/v4/leads/loss_reasons` (not paged).
    LossReasons,
    /// `GET /api/v4/leads/tags` (paged).
    Tags,
    /// Every request, whatever its method and path.
    Any,
}

impl FaultScope {
    /// Every scope that is one kind of listing (not [`FaultScope::Leads`]
    /// nor [`FaultScope::Any`]), lead listings first.
    pub const LISTINGS: [FaultScope; 11] = [
        FaultScope::LeadWalk,
        FaultScope::CrowdedSecond,
        FaultScope::DeletedLeads,
        FaultScope::LeadsById,
        FaultScope::Events,
        FaultScope::Account,
        FaultScope::Pipelines,
        FaultScope::CustomFields,
        FaultScope::Users,
        FaultScope::LossReasons,
        FaultScope::Tags,
    ];

    /// Whether a `GET` of `path` with the raw `query` (as
    /// [`super::RequestRecord`] holds them; empty for none) is one this
    /// scope covers: how a test counts the requests of a kind in
    /// [`super::Simulator::request_log`].
    pub fn covers_get(self, path: &str, query: &str) -> bool {
        let raw = (!query.is_empty()).then_some(query);
        self.covers(RequestKind::classify(true, path, raw))
    }

    fn covers(self, kind: RequestKind) -> bool {
        match self {
            FaultScope::Any => true,
            FaultScope::Leads => kind.is_leads(),
            FaultScope::LeadWalk => kind == RequestKind::LeadWalk,
            FaultScope::CrowdedSecond => kind == RequestKind::CrowdedSecond,
            FaultScope::DeletedLeads => kind == RequestKind::DeletedLeads,
            FaultScope::LeadsById => kind == RequestKind::LeadsById,
            FaultScope::Events => kind == RequestKind::Events,
            FaultScope::Account => kind == RequestKind::Account,
            FaultScope::Pipelines => kind == RequestKind::Pipelines,
            FaultScope::CustomFields => kind == RequestKind::CustomFields,
            FaultScope::Users => kind == RequestKind::Users,
            FaultScope::LossReasons => kind == RequestKind::LossReasons,
            FaultScope::Tags => kind == RequestKind::Tags,
        }
    }
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

/// An answer given instead of the real one. "The listing's key" is the
/// array under `_embedded`: `leads`, `events`, `pipelines`,
/// `custom_fields`, `users`, `loss_reasons` or `tags`. `/api/v4/account`
/// is one object, no list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Exactly [`Fault::EmptyList`] (its first name, kept for the tests
    /// written with it).
    EmptyLeads,
    /// `200 application/hal+json`: a valid HAL page with `_page` (the
    /// request's `page`, 1 without one), `_links.self` and `_links.next`
    /// (to the following page) but the listing's key holding `[]`, e.g.
    /// `{"_embedded":{"tags":[]}}`; the real answer is not computed. A
    /// request that is no listing (`/api/v4/account`, unknown paths) gets
    /// its real answer; under [`FaultScope::Any`] an unknown path gets an
    /// empty `leads` page, as before listings had their own scopes.
    EmptyList,
    /// `200` with the body `{}`, on any path.
    EmptyObject,
    /// The real page cut to half of its items (rounded down, so at least
    /// one is dropped), with `_links.next` removed and every other field
    /// (`_page`, `_links.self`, `_page_count`, `_total_items`) as is; `204`
    /// when the real answer has 0 or 1 items (or is itself a 204). On a
    /// listing that is not paged (pipelines, loss reasons) it is the whole
    /// list cut in half. Requests that are not lists (`/api/v4/account`)
    /// get their real answer.
    ShortPage,
    /// `200`: the real body cut in its middle (never valid JSON), with the
    /// real content type; a request whose real answer is empty (a 204) gets
    /// a cut page (`{"_page":1,"_emb`, with the request's page).
    TruncatedBody,
    /// The real answer with the `id` of the listing's first element sent as
    /// a JSON string (`"1000042"` instead of `1000042`); on
    /// `/api/v4/account`, the account's `id`. An answer with no element, or
    /// whose first element's `id` is not a number, is sent as it is: event
    /// ids are strings already, so on `/api/v4/events` use
    /// [`Fault::StringEntityId`].
    StringId,
    /// The real answer with the `entity_id` of the listing's first element
    /// sent as a JSON string: on `/api/v4/events`, the lead the event is
    /// about. Elements without a numeric `entity_id` (every other listing)
    /// are sent as they are.
    StringEntityId,
    /// The real answer with `is_deleted` removed from every element of the
    /// listing (what a deleted-leads listing would send if Kommo ever left
    /// the flag out: the listing itself still says the leads are deleted).
    WithoutIsDeleted,
    /// The real answer with every element's `enums` set to `null` (a
    /// custom field listing whose select fields came back without their
    /// options: it says nothing of them).
    NullEnums,
    /// The connection is closed without any HTTP answer.
    DroppedConnection,
    /// `429` with an nginx HTML body and the given `Retry-After`.
    TooManyRequests(RetryAfter),
    /// `403` with nginx's HTML page (the abuse block).
    Blocked,
    /// `402` `application/problem+json` (account not paid).
    Unpaid,
    /// That status with an nginx HTML body (`Status(204)`: a 204 with no
    /// body, as a listing with nothing in it answers); a code outside
    /// 200..=599 answers 500.
    Status(u16),
}

/// What a request is, as far as fault scopes care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// `GET /api/v4/leads`, first order `order[updated_at]`
    LeadWalk,
    /// `GET /api/v4/leads`, first order `order[id]`
    CrowdedSecond,
    /// `GET /api/v4/leads?with=only_deleted`
    DeletedLeads,
    /// `GET /api/v4/leads?filter[id][]=..`
    LeadsById,
    /// `GET /api/v4/leads` that is none of the above
    OtherLeads,
    /// `GET /api/v4/events`
    Events,
    /// `GET /api/v4/account`
    Account,
    /// `GET /api/v4/leads/pipelines`
    Pipelines,
    /// `GET /api/v4/leads/custom_fields`
    CustomFields,
    /// `GET /api/v4/users`
    Users,
    /// `GET /api/v4/leads/loss_reasons`
    LossReasons,
    /// `GET /api/v4/leads/tags`
    Tags,
    /// anything else (other paths, other methods)
    Other,
}

impl RequestKind {
    /// The kind of a request: a `GET` (`get`) of `path` with the raw query.
    pub(crate) fn classify(get: bool, path: &str, raw: Option<&str>) -> RequestKind {
        if !get {
            return RequestKind::Other;
        }
        match path {
            "/api/v4/leads" => Self::lead_listing(raw),
            "/api/v4/events" => RequestKind::Events,
            directory::ACCOUNT => RequestKind::Account,
            directory::PIPELINES => RequestKind::Pipelines,
            directory::CUSTOM_FIELDS => RequestKind::CustomFields,
            directory::USERS => RequestKind::Users,
            directory::LOSS_REASONS => RequestKind::LossReasons,
            directory::TAGS => RequestKind::Tags,
            _ => RequestKind::Other,
        }
    }

    /// Which lead listing a `GET /api/v4/leads` query asks for.
    fn lead_listing(raw: Option<&str>) -> RequestKind {
        let (mut only_deleted, mut by_id, mut first_order) = (false, false, None);
        for (key, value) in pairs(raw.unwrap_or("")) {
            if key == "with" {
                only_deleted |= value.split(',').any(|w| w.trim() == "only_deleted");
            } else if let Some(rest) = key.strip_prefix("filter[") {
                by_id |= is_id_filter(rest);
            } else if first_order.is_none()
                && let Some(field) = key.strip_prefix("order[").and_then(|r| r.strip_suffix(']'))
                && matches!(field, "id" | "updated_at" | "created_at")
            {
                first_order = Some(field.to_string());
            }
        }
        if only_deleted {
            RequestKind::DeletedLeads
        } else if by_id {
            RequestKind::LeadsById
        } else {
            match first_order.as_deref() {
                Some("updated_at") => RequestKind::LeadWalk,
                Some("id") => RequestKind::CrowdedSecond,
                _ => RequestKind::OtherLeads,
            }
        }
    }

    /// Whether it is a `GET /api/v4/leads`.
    pub(crate) fn is_leads(self) -> bool {
        matches!(
            self,
            RequestKind::LeadWalk
                | RequestKind::CrowdedSecond
                | RequestKind::DeletedLeads
                | RequestKind::LeadsById
                | RequestKind::OtherLeads
        )
    }

    /// The key under `_embedded` of its list; `None` for what is no list.
    pub(crate) fn list_key(self) -> Option<&'static str> {
        match self {
            k if k.is_leads() => Some("leads"),
            RequestKind::Events => Some("events"),
            RequestKind::Pipelines => Some("pipelines"),
            RequestKind::CustomFields => Some("custom_fields"),
            RequestKind::Users => Some("users"),
            RequestKind::LossReasons => Some("loss_reasons"),
            RequestKind::Tags => Some("tags"),
            _ => None,
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

    /// Drops every queued batch (the block, the unpaid account and a
    /// throttle burst stay) and returns how many faults were never given.
    pub(crate) fn clear_queue(&mut self) -> usize {
        self.queue.drain(..).map(|b| b.faults.len()).sum()
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
        assert_eq!(f.decide(RequestKind::LeadWalk, now), None, "skipped");
        assert_eq!(
            f.decide(RequestKind::LeadWalk, now),
            Some(Fault::EmptyObject)
        );
        assert_eq!(f.decide(RequestKind::Other, now), Some(Fault::Status(502)));
        assert_eq!(f.decide(RequestKind::LeadWalk, now), Some(Fault::Blocked));
        assert_eq!(f.decide(RequestKind::LeadWalk, now), None);

        f.replace_lead_failures(3, 503);
        f.replace_lead_failures(1, 500);
        assert_eq!(
            f.decide(RequestKind::LeadWalk, now),
            Some(Fault::Status(500))
        );
        assert_eq!(f.decide(RequestKind::LeadWalk, now), None);
        f.replace_lead_failures(2, 500);
        f.replace_lead_failures(0, 500);
        assert_eq!(f.decide(RequestKind::LeadWalk, now), None, "0 cancels");
    }

    #[test]
    fn classifies_each_listing_by_path_and_query() {
        use RequestKind as K;
        let leads = "/api/v4/leads";
        let cases: [(bool, &str, &str, RequestKind); 23] = [
            (
                true,
                leads,
                "filter[updated_at][from]=5&order[updated_at]=asc&page=2&limit=50",
                K::LeadWalk,
            ),
            (
                true,
                leads,
                "order%5Bupdated_at%5D=desc&limit=1",
                K::LeadWalk,
            ),
            (
                true,
                leads,
                "order[updated_at]=asc&order[id]=asc",
                K::LeadWalk,
            ),
            (
                true,
                leads,
                "filter[updated_at][from]=7&filter[updated_at][to]=7&order[id]=asc&page=3",
                K::CrowdedSecond,
            ),
            (
                true,
                leads,
                "order[id]=desc&order[updated_at]=asc",
                K::CrowdedSecond,
            ),
            (
                true,
                leads,
                "with=only_deleted,source_id&order[updated_at]=asc",
                K::DeletedLeads,
            ),
            (
                true,
                leads,
                "with=source_id%2Conly_deleted&filter[id][]=4",
                K::DeletedLeads,
            ),
            (
                true,
                leads,
                "filter[id][]=4&filter[id][]=5&order[id]=asc",
                K::LeadsById,
            ),
            (
                true,
                leads,
                "filter%5Bid%5D=4&order[updated_at]=asc",
                K::LeadsById,
            ),
            (true, leads, "filter[id][0]=4&with=contacts", K::LeadsById),
            (true, leads, "", K::OtherLeads),
            (
                true,
                leads,
                "filter[updated_at][from]=1&filter[updated_at][to]=1&limit=1",
                K::OtherLeads,
            ),
            (
                true,
                leads,
                "order[created_at]=asc&order[updated_at]=asc",
                K::OtherLeads,
            ),
            (true, leads, "filter[idx]=4&order[name]=asc", K::OtherLeads),
            (
                true,
                "/api/v4/events",
                "filter[type]=lead_deleted",
                K::Events,
            ),
            (
                true,
                "/api/v4/account",
                "with=datetime_settings",
                K::Account,
            ),
            (true, "/api/v4/leads/pipelines", "", K::Pipelines),
            (
                true,
                "/api/v4/leads/custom_fields",
                "page=2&limit=50",
                K::CustomFields,
            ),
            (true, "/api/v4/users", "page=1&limit=250", K::Users),
            (true, "/api/v4/leads/loss_reasons", "", K::LossReasons),
            (true, "/api/v4/leads/tags", "page=1&limit=250", K::Tags),
            (true, "/api/v4/contacts", "order[id]=asc", K::Other),
            (false, leads, "order[updated_at]=asc", K::Other),
        ];
        for (get, path, query, want) in cases {
            let raw = (!query.is_empty()).then_some(query);
            assert_eq!(
                RequestKind::classify(get, path, raw),
                want,
                "{path}?{query}"
            );
        }
        // each listing scope covers its kind alone; Leads every lead kind
        let kinds = [
            K::LeadWalk,
            K::CrowdedSecond,
            K::DeletedLeads,
            K::LeadsById,
            K::Events,
            K::Account,
            K::Pipelines,
            K::CustomFields,
            K::Users,
            K::LossReasons,
            K::Tags,
        ];
        for (scope, own) in FaultScope::LISTINGS.into_iter().zip(kinds) {
            for kind in kinds.into_iter().chain([K::OtherLeads, K::Other]) {
                assert_eq!(scope.covers(kind), kind == own, "{scope:?} {kind:?}");
            }
        }
        for kind in kinds.into_iter().chain([K::OtherLeads, K::Other]) {
            assert_eq!(FaultScope::Leads.covers(kind), kind.is_leads(), "{kind:?}");
            assert!(FaultScope::Any.covers(kind));
        }
        assert!(FaultScope::CrowdedSecond.covers_get(leads, "order%5Bid%5D=asc"));
        assert!(FaultScope::Tags.covers_get("/api/v4/leads/tags", ""));
        assert!(!FaultScope::LeadWalk.covers_get(leads, ""));
    }

    #[test]
    fn clearing_the_queue_counts_the_faults_never_given() {
        let mut f = Faults::default();
        let now = Instant::now();
        f.queue(FaultScope::Tags, 5, vec![Fault::ShortPage, Fault::StringId]);
        f.queue(FaultScope::Events, 0, vec![Fault::EmptyList]);
        assert_eq!(f.decide(RequestKind::Events, now), Some(Fault::EmptyList));
        f.set_blocked(true);
        assert_eq!(f.clear_queue(), 2);
        assert_eq!(f.clear_queue(), 0);
        assert_eq!(f.decide(RequestKind::Tags, now), Some(Fault::Blocked));
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
            f.decide(RequestKind::LeadWalk, now),
            Some(Fault::TooManyRequests(RetryAfter::Seconds(3)))
        );
        f.throttle_for(Duration::ZERO, RetryAfter::None);
        assert_eq!(
            f.decide(RequestKind::LeadWalk, Instant::now()),
            Some(Fault::EmptyObject)
        );
        f.throttle_for(Duration::MAX, RetryAfter::None);
        assert!(f.decide(RequestKind::LeadWalk, Instant::now()).is_some());
    }
}
