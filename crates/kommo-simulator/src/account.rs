//! The simulated account: one [`Table`] per kind of record (leads,
//! contacts, companies), its structure (pipelines, users, fields, tags...),
//! the server clock (with its offset) every change stamps, the event log,
//! and the mutations a test (or the churn hook) applies to records of any
//! kind: updates, bulk edits, crowded seconds, changes that stay invisible
//! for a while (replication lag), deletions and restores (each writing its
//! event), additions, raw objects. What an update changes in a record is
//! `generator`'s for leads and `records`' for contacts and companies; the
//! edits of a lead's links, tags, fields and stage are in `edits`. Every
//! listing answers from [`Account::page`]. Everything here is synchronous;
//! callers hold the state mutex.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fastrand::Rng;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::SimulatorConfig;
use super::events::{self, Event, EventQuery, Move};
use super::generator::{self, AccountRefs};
use super::history::{self, StatusChange};
use super::kind::RecordKind;
use super::links;
use super::query::ListQuery;
use super::records::{self, Deferred, Plan};
use super::structure::Structure;
use super::table::{Mutation, Table, page_of};

/// This machine's wall clock, Unix seconds.
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Salts deriving each rng stream from the seed.
const LEAD_CHANGES: u64 = 0x9E37_79B9_7F4A_7C15;
const LEAD_LINKS: u64 = 0x00C0_A7AC_7500_0008;
const CONTACTS: u64 = 0x5EED_C0DE_C047_AC75;
const COMPANIES: u64 = 0x5EED_C0DE_C0B4_A41E;

pub(crate) struct Account {
    pub(super) leads: Table,
    /// generated on first use
    contacts: Deferred,
    companies: Deferred,
    /// seconds the server clock runs ahead of this machine's
    clock_offset: i64,
    /// the second the server clock stands still at, if it does
    frozen_at: Option<i64>,
    /// draws the contacts of new leads (generation uses it first), so the
    /// leads themselves come out of the lead rng as before links existed
    aux_rng: Rng,
    events: Vec<Event>,
    pub(super) structure: Structure,
    base_url: String,
}

impl Account {
    /// Generates the account of `config`: the ids of its companies and
    /// contacts (their records, each kind from rngs of its own with a
    /// bulk-import block of `tie_block.min(n / 10)` records, are generated
    /// on first use), then the leads exactly as before contacts existed
    /// (their companies and contacts mapped onto existing ones), then the
    /// leads' stage history.
    pub(crate) fn new(config: &SimulatorConfig, base_url: String) -> Account {
        let now = now_unix();
        let tie = |n: usize| config.tie_block.min(n / 10);
        let companies = Plan::new(
            RecordKind::Company,
            config.seed ^ COMPANIES,
            config.companies,
            tie(config.companies),
            now,
            &base_url,
            Vec::new(),
        );
        let company_ids = companies.ids().to_vec();
        let contacts = Plan::new(
            RecordKind::Contact,
            config.seed ^ CONTACTS,
            config.contacts,
            tie(config.contacts),
            now,
            &base_url,
            company_ids.clone(),
        );
        let contact_ids = contacts.ids().to_vec();
        let refs = AccountRefs {
            base_url: &base_url,
            companies: &company_ids,
        };

        let mut rng = Rng::with_seed(config.seed);
        let (list, next_id) =
            generator::generate(&mut rng, config.leads, config.tie_block, now, &refs);
        let mut aux_rng = Rng::with_seed(config.seed ^ LEAD_LINKS);
        let list = list
            .into_iter()
            .map(|mut v| {
                links::set_contacts(&mut v, links::random_contacts(&mut aux_rng, &contact_ids));
                v
            })
            .collect();
        let leads = Table::new(list, next_id, Rng::with_seed(config.seed ^ LEAD_CHANGES));
        let structure = Structure::new();
        let past = history::generate(&mut aux_rng, &leads.alive, &structure, now);
        let mut account = Account {
            leads,
            contacts: Deferred::new(contacts),
            companies: Deferred::new(companies),
            clock_offset: 0,
            frozen_at: None,
            events: Vec::new(),
            structure,
            base_url,
            aux_rng,
        };
        for m in past {
            account.log_status_change(m.lead_id, m.created_at, m.created_by, m.status);
        }
        account
    }

    pub(crate) fn structure(&self) -> &Structure {
        &self.structure
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    pub(crate) fn table(&self, kind: RecordKind) -> &Table {
        match kind {
            RecordKind::Lead => &self.leads,
            RecordKind::Contact => self.contacts.get(),
            RecordKind::Company => self.companies.get(),
        }
    }

    pub(crate) fn table_mut(&mut self, kind: RecordKind) -> &mut Table {
        match kind {
            RecordKind::Lead => &mut self.leads,
            RecordKind::Contact => self.contacts.get_mut(),
            RecordKind::Company => self.companies.get_mut(),
        }
    }

    /// Every stored object of every kind (see [`Table::stored_mut`];
    /// contacts and companies are generated if they are not yet).
    pub(super) fn stored_records_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.leads
            .stored_mut()
            .chain(self.contacts.get_mut().stored_mut())
            .chain(self.companies.get_mut().stored_mut())
    }

    /// The server's now, Unix seconds: this machine's plus the offset, or
    /// the second the clock stands still at.
    pub(crate) fn now(&self) -> i64 {
        self.frozen_at
            .unwrap_or_else(|| now_unix().saturating_add(self.clock_offset))
    }

    pub(crate) fn freeze_clock(&mut self, frozen: bool) {
        self.frozen_at = frozen.then(|| now_unix().saturating_add(self.clock_offset));
    }

    pub(crate) fn set_clock_offset(&mut self, offset_seconds: i64) {
        self.clock_offset = offset_seconds;
    }

    /// Changes the record as a user would (a lead's name, price and a
    /// custom field; a contact's or company's name, a phone or an email);
    /// `updated_at` = server now.
    pub(crate) fn update(&mut self, kind: RecordKind, id: i64) -> bool {
        let now = self.now();
        self.update_stamped(kind, id, now)
    }

    /// [`Account::update`] with `updated_at` = `stamp`. The change is
    /// visible at once (a hidden earlier change shows too).
    pub(crate) fn update_stamped(&mut self, kind: RecordKind, id: i64, stamp: i64) -> bool {
        let now = self.now();
        let t = self.table_mut(kind);
        let Some(Value::Object(record)) = t.alive.get_mut(&id) else {
            return false;
        };
        match kind {
            RecordKind::Lead => generator::change(&mut t.rng, record, id, stamp, now),
            _ => records::change(kind, &mut t.rng, record, id, stamp),
        }
        t.unhide(id);
        t.mutations.push(Mutation::Updated(id));
        true
    }

    /// Updates every alive record of `ids` (each once, however often
    /// listed) with one `updated_at` (server now); returns how many were
    /// alive.
    pub(crate) fn bulk_update(&mut self, kind: RecordKind, ids: &[i64]) -> usize {
        let stamp = self.now();
        let mut seen = std::collections::BTreeSet::new();
        ids.iter()
            .filter(|id| seen.insert(**id))
            .filter(|id| self.update_stamped(kind, **id, stamp))
            .count()
    }

    /// Gives the `n` alive records in the middle of the history (by
    /// `updated_at`) one `updated_at`: the newest of theirs, as a bulk edit
    /// then would have. Returns that second, `None` with no record.
    pub(crate) fn crowd_one_second(&mut self, kind: RecordKind, n: usize) -> Option<i64> {
        let (ids, stamp) = self.table(kind).middle_of_history(n)?;
        for id in ids {
            self.update_stamped(kind, id, stamp);
        }
        Some(stamp)
    }

    /// Up to `count` distinct alive ids picked at random, ascending.
    pub(crate) fn random_alive(&mut self, kind: RecordKind, count: usize) -> Vec<i64> {
        self.table_mut(kind).random_alive(count)
    }

    /// Updates the record (stamped with the server's now) but keeps serving
    /// the object it showed until `delay` has passed.
    pub(crate) fn update_visible_after(
        &mut self,
        kind: RecordKind,
        id: i64,
        delay: Duration,
    ) -> bool {
        let now = Instant::now();
        let Some(shown) = self.table(kind).shown(id, now) else {
            return false;
        };
        if !self.update(kind, id) {
            return false;
        }
        self.table_mut(kind).hide(id, shown, now, delay);
        true
    }

    /// Lists `value` as given among the records of `kind` (see
    /// [`Table::add_raw`]).
    pub(crate) fn add_raw(&mut self, kind: RecordKind, value: Value) {
        self.table_mut(kind).add_raw(value);
    }

    /// Moves the record to the deleted set and logs its deletion event,
    /// stamped with the server's now.
    pub(crate) fn delete(&mut self, kind: RecordKind, id: i64) -> bool {
        let deleted_at = self.now();
        if !self.table_mut(kind).delete(id, deleted_at) {
            return false;
        }
        self.log_event(kind, kind.deleted_event(), id, deleted_at);
        true
    }

    /// Back to alive with the object it had (`updated_at` is not bumped)
    /// and its restore event logged.
    pub(crate) fn restore(&mut self, kind: RecordKind, id: i64) -> bool {
        if !self.table_mut(kind).restore(id) {
            return false;
        }
        let now = self.now();
        self.log_event(kind, kind.restored_event(), id, now);
        true
    }

    /// A new record with a new highest id; `created_at = updated_at` =
    /// server now. A new lead links to alive contacts and companies, a new
    /// contact to an alive company.
    pub(crate) fn add(&mut self, kind: RecordKind) -> i64 {
        let now = self.now();
        let companies = self.companies.alive_ids();
        let contacts = match kind {
            RecordKind::Lead => self.contacts.alive_ids(),
            _ => Vec::new(),
        };
        let refs = AccountRefs {
            base_url: &self.base_url,
            companies: &companies,
        };
        let t = match kind {
            RecordKind::Lead => &mut self.leads,
            RecordKind::Contact => self.contacts.get_mut(),
            RecordKind::Company => self.companies.get_mut(),
        };
        let id = t.take_id();
        let record = match kind {
            RecordKind::Lead => {
                let mut lead = generator::lead(&mut t.rng, id, (now, now), now, &refs);
                let links = links::random_contacts(&mut self.aux_rng, &contacts);
                links::set_contacts(&mut lead, links);
                lead
            }
            _ => {
                let mut pool = records::PhonePool::default();
                records::record(kind, &mut t.rng, id, (now, now), now, &refs, &mut pool)
            }
        };
        self.table_mut(kind).insert_new(id, record);
        id
    }

    /// `n` random mutations of records of `kind`: ~60% update (one in five
    /// of a lead's a stage move), ~20% delete, ~15% add, ~5% restore.
    pub(crate) fn churn(&mut self, kind: RecordKind, n: usize) {
        for _ in 0..n {
            let roll = self.table_mut(kind).rng.u8(0..100);
            match roll {
                0..=59 | 95..=99 => {
                    if roll >= 95
                        && let Some(id) = self.table_mut(kind).pick_deleted()
                    {
                        self.restore(kind, id);
                    } else if let Some(id) = self.table_mut(kind).pick_alive() {
                        let stage_move = kind == RecordKind::Lead && self.leads.rng.u8(0..5) == 0;
                        if !stage_move || !self.random_status_change(id) {
                            self.update(kind, id);
                        }
                    } else {
                        self.add(kind);
                    }
                }
                60..=79 => match self.table_mut(kind).pick_alive() {
                    Some(id) => {
                        self.delete(kind, id);
                    }
                    None => {
                        self.add(kind);
                    }
                },
                _ => {
                    self.add(kind);
                }
            }
        }
    }

    fn log_event(&mut self, entity: RecordKind, kind: &'static str, id: i64, created_at: i64) {
        let n = self.events.len() as u64 + 1;
        self.events.push(Event {
            id: n,
            kind,
            entity,
            entity_id: id,
            created_at,
            created_by: generator::USERS[0],
            status: None,
        });
    }

    /// Logs a `lead_status_changed` event.
    pub(super) fn log_status_change(
        &mut self,
        lead_id: i64,
        created_at: i64,
        created_by: i64,
        status: Move,
    ) {
        let id = self.events.len() as u64 + 1;
        self.events.push(Event {
            id,
            kind: "lead_status_changed",
            entity: RecordKind::Lead,
            entity_id: lead_id,
            created_at,
            created_by,
            status: Some(status),
        });
    }

    /// Every `lead_status_changed` event, oldest first (log order within a
    /// second).
    pub(crate) fn status_events(&self) -> Vec<StatusChange> {
        let mut out: Vec<StatusChange> = self
            .events
            .iter()
            .filter_map(|e| {
                let m = e.status?;
                Some(StatusChange {
                    event_id: events::event_id(e.id),
                    lead_id: e.entity_id,
                    from_pipeline: m.from.0,
                    from_status: m.from.1,
                    to_pipeline: m.to.0,
                    to_status: m.to.1,
                    created_at: e.created_at,
                    created_by: e.created_by,
                })
            })
            .collect();
        out.sort_by_key(|c| c.created_at);
        out
    }

    /// A page of `/api/v4/events`, newest first, and whether more follow.
    pub(crate) fn events_page(&self, q: &EventQuery) -> (Vec<Value>, bool) {
        events::page(&self.events, q, &self.base_url)
    }

    /// The alive leads as the API serves them now with `with=contacts`
    /// (hidden changes not shown), by id.
    pub(crate) fn alive_leads(&self) -> Vec<Value> {
        self.leads.alive_visible(Instant::now()).cloned().collect()
    }

    /// The alive records of `kind` as a listing without `with` serves them
    /// now, by id.
    pub(crate) fn alive_records(&self, kind: RecordKind) -> Vec<Value> {
        let records = self.table(kind).alive_visible(Instant::now()).cloned();
        match kind {
            RecordKind::Lead => records.map(links::without_contacts).collect(),
            _ => records.collect(),
        }
    }

    /// The minimal object `with=only_deleted` lists for a deleted lead.
    fn deleted_view(&self, id: i64, deleted_at: i64) -> Value {
        let mut m = Map::new();
        for key in [
            "name",
            "price",
            "responsible_user_id",
            "group_id",
            "status_id",
            "pipeline_id",
            "loss_reason_id",
            "created_by",
            "updated_by",
            "created_at",
        ] {
            m.insert(key.into(), Value::Null);
        }
        m.insert("updated_at".into(), json!(deleted_at));
        for key in ["closed_at", "closest_task_at"] {
            m.insert(key.into(), Value::Null);
        }
        m.insert("is_deleted".into(), json!(true));
        for key in ["custom_fields_values", "score"] {
            m.insert(key.into(), Value::Null);
        }
        m.insert("account_id".into(), json!(generator::ACCOUNT_ID));
        m.insert("labor_cost".into(), Value::Null);
        let mut out = Map::new();
        out.insert("id".into(), json!(id));
        out.extend(m);
        out.insert(
            "_links".into(),
            json!({"self": {"href": format!("{}/api/v4/leads/{id}", self.base_url)}}),
        );
        Value::Object(out)
    }

    /// The page `q.page` of the listing of `kind`, as it is visible at
    /// `now`, and whether more items exist past it. Leads: the deleted ones
    /// with `with=only_deleted`, `_embedded.contacts` only with
    /// `with=contacts`. Contacts and companies: only alive ones (there is
    /// no `with=only_deleted` for them), `_embedded.leads` with
    /// `with=leads`.
    pub(crate) fn page(&self, kind: RecordKind, q: &ListQuery, now: Instant) -> (Vec<Value>, bool) {
        let owned: Vec<Value>;
        let (rows, more) = if kind == RecordKind::Lead && q.only_deleted {
            owned = self
                .leads
                .deleted
                .iter()
                .map(|(id, d)| self.deleted_view(*id, d.deleted_at))
                .collect();
            page_of(owned.iter(), q)
        } else {
            self.table(kind).alive_page(q, now)
        };
        let rows = rows.into_iter().cloned();
        let items = match kind {
            RecordKind::Lead if q.with_contacts => rows.collect(),
            RecordKind::Lead => rows.map(links::without_contacts).collect(),
            _ if q.with_leads => {
                let index = links::leads_by_record(kind, self.leads.alive_visible(now));
                rows.map(|r| links::with_leads(r, &index)).collect()
            }
            _ => rows.collect(),
        };
        (items, more)
    }
}
