//! An in-process simulator of the Kommo API v4 lead endpoints, so the sync
//! daemon can be tested (and demonstrated) without a real account: offset
//! paging computed live, 204 past the end, a strict 7-per-second window with
//! non-JSON 429s, 401 problem+json on bad or revoked tokens, deleted leads,
//! concurrent churn while a client pages, and every fault and edge of the
//! real service a test can switch on: queued faults aimed at every request,
//! every lead request or one kind of listing (empty, short or cut pages,
//! ids sent as strings, dropped connections, 429s with `Retry-After`, nginx
//! error pages),
//! the abuse block, the unpaid account, throttle bursts, a skewed server
//! clock, leads stamped in the future, bulk edits sharing one second,
//! replication lag, ignored filters and malformed lead objects. It also
//! models the account's structure (pipelines and statuses, custom fields,
//! users, loss reasons, tags, served by their own endpoints, renamed,
//! added and deleted by tests), each lead's
//! contacts (`with=contacts`) and its stage history (`lead_status_changed`
//! events), consistently with the leads. The behaviour follows
//! `docs/kommo-api.md`.
//!
//! [`Simulator`] is the public handle; `account` holds the leads,
//! `generator` creates them, `links` their contacts, `history` their past
//! stage moves, `edits` changes their stage, tags, contacts and fields,
//! `structure` holds the account's structure and `directory` serves it,
//! `query` parses list requests, `events` the event log, `faults` decides
//! which fault a request gets, `http` serves them and `stats` counts and
//! logs what happened.

mod account;
mod directory;
mod edits;
mod events;
mod faults;
mod generator;
mod history;
mod http;
mod links;
mod query;
mod stats;
mod structure;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_faults;
#[cfg(test)]
mod tests_structure;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::watch;

pub use account::Mutation;
pub use faults::{Fault, FaultScope, RetryAfter};
pub use history::StatusChange;
pub use stats::{RequestRecord, SimulatorStats};
pub use structure::StructureIds;

use account::Account;
use faults::Faults;
use stats::{RateWindow, RequestLog};

/// How the simulated account is generated and policed.
#[derive(Clone, Debug)]
pub struct SimulatorConfig {
    /// number of leads to generate (default 5000)
    pub leads: usize,
    /// size of a bulk-import block of leads that all share ONE updated_at
    /// second (default 600, i.e. > 2 pages of 250); 0 = none
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
            tie_block: 600,
            seed: 42,
            rate_limit_per_second: 7,
            token: "sim-token".to_string(),
        }
    }
}

/// Test-controlled knobs of the lead endpoint.
struct Control {
    token: Option<String>,
    revoke_after: Option<u64>,
    churn: usize,
    /// Added before every answer, like the round trip to a distant server.
    latency: Duration,
    /// `filter[...]` of lead lists is ignored (no filtering add-on)
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
        let ids = self.account.random_alive(count);
        self.account.bulk_update(&ids);
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
        let account = Account::new(
            config.leads,
            config.tie_block,
            config.seed,
            base_url.clone(),
        );
        let (tx, mut rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                account,
                control: Control {
                    token: Some(config.token),
                    revoke_after: None,
                    churn: 0,
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
        self.shared.lock().account.crowd_one_second(n)
    }

    /// Changes a lead like [`Simulator::update_lead`] but stamps
    /// `updated_at` = server now + `seconds_ahead` (a lead stamped in the
    /// future by a broken integration). False when the lead is not alive.
    pub fn stamp_lead_ahead(&self, id: i64, seconds_ahead: i64) -> bool {
        let mut st = self.shared.lock();
        let stamp = st.account.now().saturating_add(seconds_ahead);
        st.account.update_stamped(id, stamp)
    }

    /// Updates every lead of `ids` in one bulk edit: all get the same
    /// `updated_at` (server now). Returns how many existed (alive; an id
    /// listed twice is updated and counted once).
    pub fn bulk_update(&self, ids: &[i64]) -> usize {
        self.shared.lock().account.bulk_update(ids)
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
        self.shared.lock().account.update_visible_after(id, delay)
    }

    /// While true, `filter[...]` parameters of `/api/v4/leads` are silently
    /// ignored (the unfiltered list is answered; `order[...]`, `page`,
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
        self.shared.lock().account.add_raw(value);
    }

    /// Every request received (the most recent 100 000), in order of
    /// arrival: when, path, query, and the status answered (0 for a dropped
    /// connection, or while it is still being answered).
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.shared.lock().log.records()
    }

    /// Before answering each lead request, apply `n` random mutations.
    pub fn set_churn_per_lead_request(&self, n: usize) {
        self.shared.lock().control.churn = n;
    }

    /// Delays every answer by `latency` (the request is counted, and its
    /// answer decided, on arrival).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().control.latency = latency;
    }

    /// Changes name, price and a custom field; `updated_at` = server now.
    pub fn update_lead(&self, id: i64) -> bool {
        self.shared.lock().account.update(id)
    }

    /// Moves the lead to the deleted set; its listed `updated_at` = server
    /// now.
    pub fn delete_lead(&self, id: i64) -> bool {
        self.shared.lock().account.delete(id)
    }

    /// Back to alive, `updated_at` unchanged.
    pub fn restore_lead(&self, id: i64) -> bool {
        self.shared.lock().account.restore(id)
    }

    /// A new lead with a new highest id; `created_at = updated_at` = server
    /// now.
    pub fn add_lead(&self) -> i64 {
        self.shared.lock().account.add()
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
        let leads = self.shared.lock().account.alive_leads();
        leads.into_iter().map(links::without_contacts).collect()
    }

    /// Ids of the alive leads, ascending.
    pub fn alive_ids(&self) -> Vec<i64> {
        self.shared.lock().account.alive_ids()
    }

    /// Ids of the deleted (restorable) leads, ascending.
    pub fn deleted_ids(&self) -> Vec<i64> {
        self.shared.lock().account.deleted_ids()
    }

    /// Every mutation applied since start, in order.
    pub fn mutations(&self) -> Vec<Mutation> {
        self.shared.lock().account.mutations()
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

    /// Renames a user (same id). False when no user has `id`.
    pub fn rename_user(&self, id: i64, name: &str) -> bool {
        self.shared.lock().account.structure.rename_user(id, name)
    }

    /// Renames status `status_id` of pipeline `pipeline_id` (same id; 142
    /// and 143 are renamed in that pipeline only). False when unknown.
    pub fn rename_status(&self, pipeline_id: i64, status_id: i64, name: &str) -> bool {
        self.shared
            .lock()
            .account
            .structure
            .rename_status(pipeline_id, status_id, name)
    }

    /// Adds a tag (no colour) with a new id, which it returns.
    pub fn add_tag(&self, name: &str) -> i64 {
        self.shared.lock().account.structure.add_tag(name)
    }

    /// Renames a tag (same id). Leads carrying it show the new name in
    /// `_embedded.tags` at once, their `updated_at` unchanged (the real
    /// service renders the name when it answers). False when unknown.
    pub fn rename_tag(&self, id: i64, name: &str) -> bool {
        self.shared.lock().account.rename_tag(id, name)
    }

    /// Renames a custom field (same id). Leads carrying it show the new
    /// `field_name` at once, their `updated_at` unchanged. False when
    /// unknown.
    pub fn rename_custom_field(&self, id: i64, name: &str) -> bool {
        self.shared.lock().account.rename_field(id, name)
    }

    /// Renames a loss reason (same id; its `updated_at` = server now).
    /// False when unknown.
    pub fn rename_loss_reason(&self, id: i64, name: &str) -> bool {
        let mut st = self.shared.lock();
        let now = st.account.now();
        st.account.structure.rename_loss_reason(id, name, now)
    }

    /// Adds a text custom field (no code, no enums) with a new id, which
    /// it returns; leads get values for it only through
    /// [`Simulator::set_lead_custom_field`].
    pub fn add_custom_field(&self, name: &str) -> i64 {
        self.shared.lock().account.structure.add_field(name)
    }

    /// Deletes a tag: `/api/v4/leads/tags` stops listing it. Leads carrying
    /// it keep it in `_embedded.tags`, their `updated_at` unchanged (whether
    /// Kommo strips it from them, and when, is unconfirmed), and it can no
    /// longer be given to a lead. False when unknown.
    pub fn delete_tag(&self, id: i64) -> bool {
        self.shared.lock().account.structure.delete_tag(id)
    }

    /// Deletes a custom field: `/api/v4/leads/custom_fields` stops listing
    /// it and its enums. Leads keep their values of it, `updated_at`
    /// unchanged (unconfirmed, as for tags). False when unknown.
    pub fn delete_custom_field(&self, id: i64) -> bool {
        self.shared.lock().account.structure.delete_field(id)
    }

    /// Deletes option `enum_id` of the select or multiselect field
    /// `field_id`: the field is listed without it (`enums: []` once none is
    /// left). Leads keep the values that name it. False when unknown.
    pub fn delete_custom_field_enum(&self, field_id: i64, enum_id: i64) -> bool {
        self.shared
            .lock()
            .account
            .structure
            .delete_field_enum(field_id, enum_id)
    }

    /// Deletes a loss reason: `/api/v4/leads/loss_reasons` stops listing it;
    /// leads keep their `loss_reason_id`, and later moves to 143 draw from
    /// the reasons left (null when none is). False when unknown.
    pub fn delete_loss_reason(&self, id: i64) -> bool {
        self.shared.lock().account.structure.delete_loss_reason(id)
    }

    /// Deletes status `status_id` of pipeline `pipeline_id`: the pipeline is
    /// listed without it, and leads can no longer be moved into it (leads in
    /// it stay, unchanged). False when unknown, and for the statuses every
    /// pipeline keeps: 142, 143 and its "Incoming leads" status.
    pub fn delete_status(&self, pipeline_id: i64, status_id: i64) -> bool {
        self.shared
            .lock()
            .account
            .structure
            .delete_status(pipeline_id, status_id)
    }

    /// Deletes a pipeline and its statuses from `/api/v4/leads/pipelines`
    /// (leads in it stay, unchanged). False when unknown, and for the main
    /// pipeline, which Kommo does not delete.
    pub fn delete_pipeline(&self, id: i64) -> bool {
        self.shared.lock().account.structure.delete_pipeline(id)
    }

    /// The ids of every structure item listed now (pipelines, statuses,
    /// users, custom fields and their enums, loss reasons, tags): what a
    /// mirror must hold not deleted after a sync that read the structure.
    pub fn structure_ids(&self) -> StructureIds {
        self.shared.lock().account.structure.ids()
    }

    /// The account's time zone as `with=datetime_settings` shows it: an
    /// IANA name and its UTC offset (default `"UTC"`, `"+00:00"`), e.g.
    /// `("America/Sao_Paulo", "-03:00")`.
    pub fn set_timezone(&self, name: &str, offset: &str) {
        self.shared
            .lock()
            .account
            .structure
            .set_timezone(name, offset);
    }

    /// The account's structure now, computed from the simulator's own
    /// state, each part exactly as its endpoint serves it: `{"account":
    /// (GET /api/v4/account?with=datetime_settings,users_groups),
    /// "pipelines": [..], "custom_fields": [..], "users": [..],
    /// "loss_reasons": [..], "tags": [..]}` (the arrays are the
    /// `_embedded` lists of every page, in order; `account.updated_at` is
    /// the server's now).
    pub fn structure(&self) -> serde_json::Value {
        let st = self.shared.lock();
        st.account
            .structure()
            .snapshot(st.account.base_url(), st.account.now())
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
