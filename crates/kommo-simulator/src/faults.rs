//! Faults the simulated server can answer with instead of the real answer:
//! the abuse block, the unpaid account, throttle bursts and a queue of
//! one-shot faults (empty or short pages, cut bodies, ids sent as strings,
//! dropped connections, 429s with or without `Retry-After`, nginx error
//! pages), each aimed at one kind of listing (of leads, contacts or
//! companies alike) or at every request. It exists
//! because a client must survive every edge `docs/kommo-api.md` lists, and
//! each edge has to be switchable from a test, on any listing. This module
//! decides *which* fault a request gets; `http` renders it.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::DateTime;
use tokio::time::Instant;

use super::classify::{Listed, RequestKind};
use super::kind::RecordKind;

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
    /// One kind's listing (`GET /api/v4/leads`, `/api/v4/contacts` or
    /// `/api/v4/companies`), classified like the lead scopes: see
    /// [`RecordListing`]. `Records(RecordKind::Lead, ..)` covers exactly
    /// what [`FaultScope::Leads`], [`FaultScope::LeadWalk`],
    /// [`FaultScope::CrowdedSecond`] and [`FaultScope::LeadsById`] cover.
    Records(RecordKind, RecordListing),
    /// `GET /api/v4/contacts/custom_fields` (paged).
    ContactCustomFields,
    /// `GET /api/v4/companies/custom_fields` (paged).
    CompanyCustomFields,
    /// Every request, whatever its method and path.
    Any,
}

/// Which of a kind's listings a [`FaultScope::Records`] covers. Contacts
/// and companies have no `with=only_deleted` listing: the flag is ignored
/// there, so it does not change how their requests are classified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordListing {
    /// Every `GET` of the kind's list path, whatever the query.
    All,
    /// The keyset walks: first `order[...]` is `order[updated_at]`
    /// (`asc` or `desc`), no id filter (and, for leads, no
    /// `with=only_deleted`).
    Walk,
    /// The reads of a crowded second: first `order[...]` is `order[id]`,
    /// no id filter (nor, for leads, `with=only_deleted`).
    CrowdedSecond,
    /// Answers by id: `filter[id]`, `filter[id][]` or `filter[id][N]`
    /// (for leads, without `with=only_deleted`).
    ById,
}

impl RecordListing {
    fn covers(self, listed: Listed) -> bool {
        match self {
            RecordListing::All => true,
            RecordListing::Walk => listed == Listed::Walk,
            RecordListing::CrowdedSecond => listed == Listed::CrowdedSecond,
            RecordListing::ById => listed == Listed::ById,
        }
    }
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

    /// Every scope that is one kind of contact or company listing, contacts
    /// first (kept apart from [`FaultScope::LISTINGS`], which holds the
    /// listings of leads and of the account's structure).
    pub const CONTACT_COMPANY_LISTINGS: [FaultScope; 8] = [
        FaultScope::Records(RecordKind::Contact, RecordListing::Walk),
        FaultScope::Records(RecordKind::Contact, RecordListing::CrowdedSecond),
        FaultScope::Records(RecordKind::Contact, RecordListing::ById),
        FaultScope::ContactCustomFields,
        FaultScope::Records(RecordKind::Company, RecordListing::Walk),
        FaultScope::Records(RecordKind::Company, RecordListing::CrowdedSecond),
        FaultScope::Records(RecordKind::Company, RecordListing::ById),
        FaultScope::CompanyCustomFields,
    ];

    /// Whether a `GET` of `path` with the raw `query` (as
    /// [`super::RequestRecord`] holds them; empty for none) is one this
    /// scope covers: how a test counts the requests of a kind in
    /// [`super::Simulator::request_log`].
    pub fn covers_get(self, path: &str, query: &str) -> bool {
        let raw = (!query.is_empty()).then_some(query);
        self.covers(RequestKind::classify(true, path, raw))
    }

    pub(crate) fn covers(self, kind: RequestKind) -> bool {
        let lead = |listed| kind == RequestKind::Records(RecordKind::Lead, listed);
        match self {
            FaultScope::Any => true,
            FaultScope::Leads => kind.is_leads(),
            FaultScope::LeadWalk => lead(Listed::Walk),
            FaultScope::CrowdedSecond => lead(Listed::CrowdedSecond),
            FaultScope::DeletedLeads => lead(Listed::Deleted),
            FaultScope::LeadsById => lead(Listed::ById),
            FaultScope::Records(of, listing) => match kind {
                RequestKind::Records(k, listed) => k == of && listing.covers(listed),
                _ => false,
            },
            FaultScope::Events => kind == RequestKind::Events,
            FaultScope::Account => kind == RequestKind::Account,
            FaultScope::Pipelines => kind == RequestKind::Pipelines,
            FaultScope::CustomFields => kind == RequestKind::CustomFields(RecordKind::Lead),
            FaultScope::ContactCustomFields => {
                kind == RequestKind::CustomFields(RecordKind::Contact)
            }
            FaultScope::CompanyCustomFields => {
                kind == RequestKind::CustomFields(RecordKind::Company)
            }
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
/// array under `_embedded`: `leads`, `contacts`, `companies`, `events`,
/// `pipelines`, `custom_fields`, `users`, `loss_reasons` or `tags`.
/// `/api/v4/account` is one object, no list.
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
    /// sent as a JSON string: on `/api/v4/events`, the lead (contact,
    /// company) the event is about. Elements without a numeric `entity_id` (every other listing)
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

    const LEAD_WALK: RequestKind = RequestKind::Records(RecordKind::Lead, Listed::Walk);

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
        assert_eq!(f.decide(LEAD_WALK, now), None, "skipped");
        assert_eq!(f.decide(LEAD_WALK, now), Some(Fault::EmptyObject));
        assert_eq!(f.decide(RequestKind::Other, now), Some(Fault::Status(502)));
        assert_eq!(f.decide(LEAD_WALK, now), Some(Fault::Blocked));
        assert_eq!(f.decide(LEAD_WALK, now), None);

        f.replace_lead_failures(3, 503);
        f.replace_lead_failures(1, 500);
        assert_eq!(f.decide(LEAD_WALK, now), Some(Fault::Status(500)));
        assert_eq!(f.decide(LEAD_WALK, now), None);
        f.replace_lead_failures(2, 500);
        f.replace_lead_failures(0, 500);
        assert_eq!(f.decide(LEAD_WALK, now), None, "0 cancels");
    }

    #[test]
    fn each_scope_covers_its_own_kind_of_request() {
        use RecordKind::{Company, Contact, Lead};
        use RequestKind as K;
        let leads = "/api/v4/leads";
        // each listing scope covers its kind alone; Leads every lead kind
        let kinds = [
            K::Records(Lead, Listed::Walk),
            K::Records(Lead, Listed::CrowdedSecond),
            K::Records(Lead, Listed::Deleted),
            K::Records(Lead, Listed::ById),
            K::Events,
            K::Account,
            K::Pipelines,
            K::CustomFields(Lead),
            K::Users,
            K::LossReasons,
            K::Tags,
        ];
        let new_kinds = [
            K::Records(Contact, Listed::Walk),
            K::Records(Contact, Listed::CrowdedSecond),
            K::Records(Contact, Listed::ById),
            K::CustomFields(Contact),
            K::Records(Company, Listed::Walk),
            K::Records(Company, Listed::CrowdedSecond),
            K::Records(Company, Listed::ById),
            K::CustomFields(Company),
        ];
        let others = [
            K::Records(Lead, Listed::Other),
            K::Records(Contact, Listed::Other),
            K::Records(Company, Listed::Other),
            K::Other,
        ];
        let every = || kinds.into_iter().chain(new_kinds).chain(others);
        let scopes = FaultScope::LISTINGS.into_iter().zip(kinds).chain(
            FaultScope::CONTACT_COMPANY_LISTINGS
                .into_iter()
                .zip(new_kinds),
        );
        for (scope, own) in scopes {
            for kind in every() {
                assert_eq!(scope.covers(kind), kind == own, "{scope:?} {kind:?}");
            }
        }
        for kind in every() {
            assert_eq!(FaultScope::Leads.covers(kind), kind.is_leads(), "{kind:?}");
            assert!(FaultScope::Any.covers(kind));
            for rk in RecordKind::ALL {
                assert_eq!(
                    FaultScope::Records(rk, RecordListing::All).covers(kind),
                    kind.record_kind() == Some(rk),
                    "{rk:?} {kind:?}"
                );
            }
        }
        // the generic lead scopes are the lead ones
        let pairs = [
            (RecordListing::Walk, FaultScope::LeadWalk),
            (RecordListing::CrowdedSecond, FaultScope::CrowdedSecond),
            (RecordListing::ById, FaultScope::LeadsById),
            (RecordListing::All, FaultScope::Leads),
        ];
        for (listing, scope) in pairs {
            for kind in every() {
                assert_eq!(
                    FaultScope::Records(Lead, listing).covers(kind),
                    scope.covers(kind),
                    "{listing:?} {kind:?}"
                );
            }
        }
        assert!(FaultScope::CrowdedSecond.covers_get(leads, "order%5Bid%5D=asc"));
        assert!(FaultScope::Tags.covers_get("/api/v4/leads/tags", ""));
        assert!(!FaultScope::LeadWalk.covers_get(leads, ""));
        assert!(
            FaultScope::Records(Contact, RecordListing::Walk)
                .covers_get("/api/v4/contacts", "order[updated_at]=asc")
        );
        assert!(
            !FaultScope::Records(Contact, RecordListing::Walk)
                .covers_get("/api/v4/companies", "order[updated_at]=asc")
        );
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
            f.decide(LEAD_WALK, now),
            Some(Fault::TooManyRequests(RetryAfter::Seconds(3)))
        );
        f.throttle_for(Duration::ZERO, RetryAfter::None);
        assert_eq!(
            f.decide(LEAD_WALK, Instant::now()),
            Some(Fault::EmptyObject)
        );
        f.throttle_for(Duration::MAX, RetryAfter::None);
        assert!(f.decide(LEAD_WALK, Instant::now()).is_some());
    }
}
