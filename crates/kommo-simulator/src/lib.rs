//! An in-process simulator of the Kommo API v4 record endpoints (leads,
//! contacts, companies), so the sync daemon can be tested (and
//! demonstrated) without a real account: offset paging computed live, 204
//! past the end, a strict 7-per-second window (one for every request) with
//! non-JSON 429s, 401 problem+json on bad or revoked tokens, deleted
//! records, concurrent churn while a client pages, and every fault and edge
//! of the real service a test can switch on: queued faults aimed at every
//! request, every lead request or one kind of listing of any kind of record
//! (empty, short or cut pages, ids sent as strings, dropped connections,
//! 429s with `Retry-After`, nginx error pages), the abuse block, the unpaid
//! account, throttle bursts, a skewed server clock, records stamped in the
//! future, bulk edits and crowded seconds, replication lag, ignored filters
//! and malformed objects. It also models the account's structure
//! (pipelines and statuses, custom fields, users, loss reasons, tags,
//! served by their own endpoints, renamed, added and deleted by tests),
//! the links between leads and contacts/companies (`with=contacts` on
//! leads, `with=leads` on contacts and companies) and each lead's stage
//! history (`lead_status_changed` events), consistently with the records.
//! The behaviour follows `docs/kommo-api.md`.
//!
//! Leads, contacts and companies ([`RecordKind`]) share one listing code,
//! one set of mutations and one set of fault scopes; they differ where
//! Kommo does: only leads have a `with=only_deleted` listing (a deleted
//! contact or company is absent everywhere and shows only as its
//! `contact_deleted` / `company_deleted` event), and each kind has its own
//! fields. Deleting a contact or a company does not edit the leads that
//! link to it. Contacts and companies are generated on first use (their
//! ids at start, so leads link only to existing ones), from rngs of their
//! own: the leads of a seed are what they were before contacts existed.
//!
//! [`Simulator`] is the public handle (its kind-generic methods in
//! `api_records`, its structure methods in `api_structure`); `kind` names
//! the kinds of record, `account` holds the records of every kind in a
//! `table` each, `generator` creates leads, `records` contacts and
//! companies (with the fields of `record_fields`), `links` the links
//! between them, `history` the leads' past stage moves, `edits` changes a
//! lead's stage, tags, contacts and fields, `structure` holds the account's
//! structure and `directory` serves it, `query` parses list requests,
//! `events` the event log, `classify` says what a request is, `faults`
//! decides which fault it gets, `http` serves them and `stats` counts and
//! logs what happened.

mod account;
mod api_records;
mod api_structure;
mod classify;
mod directory;
mod edits;
mod events;
mod faults;
mod generator;
mod history;
mod http;
mod kind;
mod links;
mod query;
mod record_fields;
mod records;
mod stats;
mod structure;
mod table;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_record_edges;
#[cfg(test)]
mod tests_records;
#[cfg(test)]
mod tests_structure;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

pub use faults::{Fault, FaultScope, RecordListing, RetryAfter};
pub use history::StatusChange;
pub use kind::RecordKind;
pub use stats::{RequestRecord, SimulatorStats};
pub use structure::StructureIds;
pub use table::Mutation;

use account::Account;
use faults::Faults;
use kind::ByKind;
use stats::{RateWindow, RequestLog};

/// How the simulated account is generated and policed.
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    /// number of leads to generate (default 5000)
    pub leads: usize,
    /// number of contacts to generate (default 300: a test's backfill of
    /// all three entities stays quick)
    pub contacts: usize,
    /// number of companies to generate (default 100)
    pub companies: usize,
    /// size of a bulk-import block of leads that all share ONE updated_at
    /// second (default 600, i.e. > 2 pages of 250); 0 = none. Contacts and
    /// companies get a block of `tie_block.min(count / 10)` records each
    /// (30 of the default 300 contacts, 10 of the 100 companies).
    pub tie_block: usize,
    /// RNG seed, deterministic generation (default 42)
    pub seed: u64,
    /// strict limit: more than this many requests arriving within any closed
    /// 1-second window get 429 (default 7)
    pub rate_limit_per_second: u32,
    /// the one token accepted (Authorization: Bearer <token>) initially
    pub token: String,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            leads: 5000,
            contacts: 300,
            companies: 100,
            tie_block: 600,
            seed: 42,
            rate_limit_per_second: 7,
            token: "sim-token".to_string(),
        }
    }
}

/// Test-controlled knobs of the record listings.
struct Control {
    token: Option<String>,
    revoke_after: Option<u64>,
    /// mutations of that kind applied before answering each of its listing
    /// requests
    churn: ByKind<usize>,
    /// Added before every answer, like the round trip to a distant server.
    latency: Duration,
    /// `filter[...]` of record lists is ignored (no filtering add-on)
    filters_ignored: bool,
    /// lead requests still to arrive before the scheduled bulk update, and
    /// how many leads it changes
    bulk_after: Option<(u64, usize)>,
    /// the leads the scheduled bulk updates changed
    bulk_updated: Vec<i64>,
    /// `/api/v4/users` answers 403 (a token without admin rights)
    users_forbidden: bool,
}

/// Everything behind the one mutex.
struct State {
    account: Account,
    control: Control,
    faults: Faults,
    stats: SimulatorStats,
    log: RequestLog,
    window: RateWindow,
    rate_limit: u32,
    /// Requests received and not yet answered.
    in_flight: u64,
}

/// State shared by the handle and the server task.
struct Shared {
    state: Mutex<State>,
    base_url: String,
}

/// Stops the server when the last handle is dropped, or on
/// [`Simulator::shutdown`].
struct ServerStop(watch::Sender<bool>);

impl Drop for ServerStop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

impl State {
    /// Counts a lead request's arrival towards a scheduled bulk update;
    /// true when that request is the last one before it runs.
    fn lead_request_arrived(&mut self) -> bool {
        match &mut self.control.bulk_after {
            Some((left, _)) if *left > 0 => {
                *left -= 1;
                *left == 0
            }
            _ => false,
        }
    }

    /// Runs the scheduled bulk update, if one is pending.
    fn run_scheduled_bulk_update(&mut self) {
        let Some((_, count)) = self.control.bulk_after.take() else {
            return;
        };
        let ids = self.account.random_alive(RecordKind::Lead, count);
        self.account.bulk_update(RecordKind::Lead, &ids);
        self.control.bulk_updated.extend(ids);
    }
}

impl Shared {
    /// Locks the state; a poisoned lock is still used (no panic cascades).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Handle to a running simulator. Cheap to clone; the server keeps running
/// until [`Simulator::shutdown`] or until the last handle is dropped.
#[derive(Clone)]
pub struct Simulator {
    shared: Arc<Shared>,
    stop: Arc<ServerStop>,
}

impl Simulator {
    /// Generates the account, binds `127.0.0.1:0` and serves on a runtime of
    /// its own, in its own thread. Kommo is another machine: the time it
    /// stamps on a request's arrival (its rate window) must not wait for the
    /// client's work on the caller's runtime, or a client that keeps the
    /// limit would be seen bunching its requests and answered 429 on a busy
    /// machine. (So the simulator's clock is always real time, even in a
    /// test with paused time.)
    pub async fn start(config: SimulatorConfig) -> std::io::Result<Simulator> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://127.0.0.1:{}", addr.port());
        let account = Account::new(&config, base_url.clone());
        let (tx, mut rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                account,
                control: Control {
                    token: Some(config.token),
                    revoke_after: None,
                    churn: ByKind::default(),
                    latency: Duration::ZERO,
                    filters_ignored: false,
                    bulk_after: None,
                    bulk_updated: Vec::new(),
                    users_forbidden: false,
                },
                faults: Faults::default(),
                stats: SimulatorStats::default(),
                log: RequestLog::default(),
                window: RateWindow::default(),
                rate_limit: config.rate_limit_per_second,
                in_flight: 0,
            }),
            base_url,
        });
        let app = http::router(shared.clone());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("kommo-simulator")
            .enable_all()
            .build()?;
        tracing::debug!(%addr, leads = config.leads, "kommo simulator listening");
        std::thread::Builder::new()
            .name("kommo-simulator".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::warn!(error = %e, "kommo simulator cannot listen");
                            return;
                        }
                    };
                    // A dropped sender (every handle gone) stops it too.
                    let stop = async move {
                        let _ = rx.wait_for(|stop| *stop).await;
                    };
                    if let Err(e) = axum::serve(listener, app)
                        .with_graceful_shutdown(stop)
                        .await
                    {
                        tracing::warn!(error = %e, "kommo simulator server failed");
                    }
                });
            })?;
        Ok(Simulator {
            shared,
            stop: Arc::new(ServerStop(tx)),
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// The accepted token becomes this one; any other gets 401.
    pub fn set_token(&self, token: &str) {
        let mut st = self.shared.lock();
        st.control.token = Some(token.to_string());
        st.control.revoke_after = None;
    }

    /// No token is accepted any more (all 401) until `set_token`.
    pub fn revoke_token(&self) {
        let mut st = self.shared.lock();
        st.control.token = None;
        st.control.revoke_after = None;
    }

    /// The next `n` authorized lead requests are answered normally, then the
    /// token is revoked (`n = 0` revokes now).
    pub fn revoke_token_after_lead_requests(&self, n: u64) {
        let mut st = self.shared.lock();
        if n == 0 {
            st.control.token = None;
            st.control.revoke_after = None;
        } else {
            st.control.revoke_after = Some(n);
        }
    }

    /// The next `n` lead requests answer `status` with a non-JSON body
    /// ([`Fault::Status`]). A later call replaces what is left of an
    /// earlier one (`n = 0` cancels it); faults queued by
    /// [`Simulator::queue_faults`] are kept.
    pub fn fail_next_lead_requests(&self, n: u32, status: u16) {
        self.shared.lock().faults.replace_lead_failures(n, status);
    }

    /// Lets the next `skip` requests of `scope` through untouched, then
    /// answers the following ones with `faults`, one each, in order. Calls
    /// queue up (a later call's faults come after the earlier ones'): a
    /// request is offered to the oldest unfinished call whose scope covers
    /// it, so a later call's `skip` counts from when the earlier calls of
    /// overlapping scope are used up. Only requests that pass the rate
    /// window, the block and a throttle burst reach the queue. Faulted
    /// requests still count in stats and the rate window; they are not
    /// checked for auth and do not run the churn hook.
    pub fn queue_faults(&self, scope: FaultScope, skip: u64, faults: Vec<Fault>) {
        self.shared.lock().faults.queue(scope, skip, faults);
    }

    /// Forgets every fault queued by [`Simulator::queue_faults`] and
    /// [`Simulator::fail_next_lead_requests`] and not given yet (a batch
    /// whose `skip` was never reached included; the block, the unpaid
    /// account and a throttle burst stay), and returns how many faults that
    /// was: 0 when every queued fault was given.
    pub fn clear_faults(&self) -> usize {
        self.shared.lock().faults.clear_queue()
    }

    /// Every request, whatever its path, answers 403 [`Fault::Blocked`]
    /// while true.
    pub fn set_blocked(&self, blocked: bool) {
        self.shared.lock().faults.set_blocked(blocked);
    }

    /// Every request answers 402 [`Fault::Unpaid`] while true.
    pub fn set_unpaid(&self, unpaid: bool) {
        self.shared.lock().faults.set_unpaid(unpaid);
    }

    /// Every request arriving in the next `duration` answers 429 with
    /// `retry_after` (a throttle burst; a new call replaces a running one).
    pub fn throttle_for(&self, duration: Duration, retry_after: RetryAfter) {
        self.shared
            .lock()
            .faults
            .throttle_for(duration, retry_after);
    }

    /// The simulated server's clock runs `offset_seconds` ahead (negative:
    /// behind) of this machine's: every timestamp it stamps from now on
    /// (`updated_at` of mutations, `created_at` of leads added, deletion
    /// and event times) and its `Date` header use it.
    pub fn set_clock_offset(&self, offset_seconds: i64) {
        self.shared.lock().account.set_clock_offset(offset_seconds);
    }

    /// The simulated server's clock stands still at its current second
    /// (`true`) or runs again (`false`): a test can hold Kommo's now while
    /// a sync reads it (every stamp and the `Date` header keep that second).
    pub fn freeze_clock(&self, frozen: bool) {
        self.shared.lock().account.freeze_clock(frozen);
    }

    /// The server's now (Unix seconds), with the offset.
    pub fn server_now(&self) -> i64 {
        self.shared.lock().account.now()
    }

    /// Gives the `n` alive leads in the middle of the history one
    /// `updated_at` second (the newest of theirs: a bulk edit back then, a
    /// crowded second mid-history) and returns it; `None` with no lead.
    pub fn crowd_one_second(&self, n: usize) -> Option<i64> {
        self.crowd_one_second_of(RecordKind::Lead, n)
    }

    /// Changes a lead like [`Simulator::update_lead`] but stamps
    /// `updated_at` = server now + `seconds_ahead` (a lead stamped in the
    /// future by a broken integration). False when the lead is not alive.
    pub fn stamp_lead_ahead(&self, id: i64, seconds_ahead: i64) -> bool {
        self.stamp_ahead(RecordKind::Lead, id, seconds_ahead)
    }

    /// Updates every lead of `ids` in one bulk edit: all get the same
    /// `updated_at` (server now). Returns how many existed (alive; an id
    /// listed twice is updated and counted once).
    pub fn bulk_update(&self, ids: &[i64]) -> usize {
        self.bulk_update_of(RecordKind::Lead, ids)
    }

    /// After `after` more `GET /api/v4/leads` requests (counted on arrival,
    /// whatever they are answered), bulk-updates `count` alive leads chosen
    /// at random (seeded rng) with one `updated_at`, the server's current
    /// second: the `after`-th request is answered from the account before
    /// the edit, the next one after it (`after = 0`: at once). A new call
    /// replaces a pending one. The leads changed are added to
    /// [`Simulator::bulk_updated_ids`].
    pub fn schedule_bulk_update(&self, after: u64, count: usize) {
        let mut st = self.shared.lock();
        st.control.bulk_after = Some((after, count));
        if after == 0 {
            st.run_scheduled_bulk_update();
        }
    }

    /// Every lead changed by scheduled bulk updates so far, in the order
    /// they ran (ascending id within one).
    pub fn bulk_updated_ids(&self) -> Vec<i64> {
        self.shared.lock().control.bulk_updated.clone()
    }

    /// Updates the lead now (stamped with the server's now) but the change
    /// stays invisible to every listing, filter, order and by-id request
    /// (the object shown before is served) for `delay` (replication lag);
    /// then it appears with that stamp, i.e. with an `updated_at` already in
    /// the past. [`Simulator::alive_leads`] shows what is served. Another
    /// change or a deletion of the lead ends the lag. False when the lead is
    /// not alive.
    pub fn update_lead_visible_after(&self, id: i64, delay: Duration) -> bool {
        self.update_visible_after(RecordKind::Lead, id, delay)
    }

    /// While true, `filter[...]` parameters of `/api/v4/leads` (and of
    /// `/api/v4/contacts` and `/api/v4/companies`) are silently ignored (the unfiltered list is answered; `order[...]`, `page`,
    /// `limit` and `with` are still honoured, malformed values still answer
    /// 400), as on accounts without the API filtering add-on.
    pub fn set_filters_ignored(&self, ignored: bool) {
        self.shared.lock().control.filters_ignored = ignored;
    }

    /// Adds an object to the alive listing exactly as given (it may lack an
    /// id, have a string id or price, an object for
    /// `custom_fields_values`, NUL or 4-byte characters...). It is listed
    /// wherever its fields place it under the filters and the order: a
    /// missing or non-integer field matches no filter on that field and
    /// sorts before every integer ascending (after, descending). An object
    /// with a positive integer `id` becomes the alive lead of that id
    /// (replacing any lead with it, alive or deleted) and is part of
    /// [`Simulator::alive_leads`] exactly as given; any other object is
    /// listed but not part of `alive_leads`/`alive_ids`.
    pub fn add_raw_lead(&self, value: serde_json::Value) {
        self.add_raw_record(RecordKind::Lead, value);
    }

    /// Every request received (the most recent 100 000), in order of
    /// arrival: when, path, query, and the status answered (0 for a dropped
    /// connection, or while it is still being answered).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.lock().log.records()
    }

    /// Before answering each lead request, apply `n` random mutations.
    pub fn set_churn_per_lead_request(&self, n: usize) {
        self.set_churn_per_request_of(RecordKind::Lead, n);
    }

    /// Delays every answer by `latency` (the request is counted, and its
    /// answer decided, on arrival).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().control.latency = latency;
    }

    /// Changes name, price and a custom field; `updated_at` = server now.
    pub fn update_lead(&self, id: i64) -> bool {
        self.update_record(RecordKind::Lead, id)
    }

    /// Moves the lead to the deleted set; its listed `updated_at` = server
    /// now.
    pub fn delete_lead(&self, id: i64) -> bool {
        self.delete_record(RecordKind::Lead, id)
    }

    /// Back to alive, `updated_at` unchanged.
    pub fn restore_lead(&self, id: i64) -> bool {
        self.restore_record(RecordKind::Lead, id)
    }

    /// A new lead with a new highest id; `created_at = updated_at` = server
    /// now.
    pub fn add_lead(&self) -> i64 {
        self.add_record(RecordKind::Lead)
    }

    /// Alive leads sorted by id, exactly as the API returns them with
    /// `with=contacts`, i.e. with `_embedded.contacts` (a change still
    /// invisible is not shown; objects without a positive integer id are
    /// not leads and not here; objects added as given are as given).
    pub fn alive_leads(&self) -> Vec<serde_json::Value> {
        self.shared.lock().account.alive_leads()
    }

    /// [`Simulator::alive_leads`] as a listing without `with=contacts`
    /// serves them: without `_embedded.contacts`.
    pub fn alive_leads_without_contacts(&self) -> Vec<serde_json::Value> {
        self.alive_records(RecordKind::Lead)
    }

    /// Ids of the alive leads, ascending.
    pub fn alive_ids(&self) -> Vec<i64> {
        self.alive_ids_of(RecordKind::Lead)
    }

    /// Ids of the deleted (restorable) leads, ascending.
    pub fn deleted_ids(&self) -> Vec<i64> {
        self.deleted_ids_of(RecordKind::Lead)
    }

    /// Every mutation of a lead applied since start, in order.
    pub fn mutations(&self) -> Vec<Mutation> {
        self.mutations_of(RecordKind::Lead)
    }

    /// Moves the alive lead to `status_id` of `pipeline_id` (any of that
    /// pipeline's statuses, 142 and 143 included) as a user of the account:
    /// `updated_at` = server now, `closed_at` = now for 142/143 (null
    /// otherwise), `loss_reason_id` one of the account's for 143 (null
    /// otherwise), and exactly one `lead_status_changed` event with
    /// `created_at` = that same second. Recorded as
    /// [`Mutation::Updated`]. False (nothing changes) when the lead is not
    /// alive, the status is not one of the pipeline's, or the lead is
    /// already there.
    pub fn change_lead_status(&self, id: i64, pipeline_id: i64, status_id: i64) -> bool {
        self.shared
            .lock()
            .account
            .change_status(id, pipeline_id, status_id)
    }

    /// The lead's `_embedded.tags` become the account's tags `tag_ids`
    /// (each once, in that order; `&[]` removes all); `updated_at` = server
    /// now. False (nothing changes) when the lead is not alive or a tag is
    /// not the account's ([`Simulator::add_tag`] adds one).
    pub fn set_lead_tags(&self, lead_id: i64, tag_ids: &[i64]) -> bool {
        self.shared.lock().account.set_tags(lead_id, tag_ids)
    }

    /// The lead's `_embedded.contacts` become `contacts`, `(contact id,
    /// is_main)` as given; `updated_at` = server now (whether Kommo bumps it
    /// on a link change is unconfirmed). False when the lead is not alive.
    pub fn set_lead_contacts(&self, lead_id: i64, contacts: &[(i64, bool)]) -> bool {
        self.shared.lock().account.set_contacts(lead_id, contacts)
    }

    /// The `values` array of the lead's custom field `field_id` becomes
    /// `values` (e.g. `json!([{"value": "x"}])`, or with `enum_id` for a
    /// select); a lead without the field gets it, `null` or `[]` removes it
    /// (`custom_fields_values` is null when none is left). `updated_at` =
    /// server now. False when the lead is not alive or the field is not the
    /// account's.
    pub fn set_lead_custom_field(
        &self,
        lead_id: i64,
        field_id: i64,
        values: serde_json::Value,
    ) -> bool {
        self.shared
            .lock()
            .account
            .set_custom_field(lead_id, field_id, values)
    }

    /// While true, `GET /api/v4/users` answers 403 `application/problem+json`
    /// (detail "Access denied"), as for a token without admin rights.
    pub fn set_users_forbidden(&self, forbidden: bool) {
        self.shared.lock().control.users_forbidden = forbidden;
    }

    /// Every `lead_status_changed` event of the log (generated history
    /// included), oldest first.
    pub fn status_events(&self) -> Vec<StatusChange> {
        self.shared.lock().account.status_events()
    }

    /// The counters so far.
    pub fn stats(&self) -> SimulatorStats {
        self.shared.lock().stats.clone()
    }

    /// Zeroes the counters (the request log is kept).
    pub fn reset_stats(&self) {
        self.shared.lock().stats = SimulatorStats::default();
    }

    /// Stops serving (graceful: in-flight requests finish).
    pub fn shutdown(&self) {
        self.stop.0.send_replace(true);
    }
}
