//! The simulated account: the alive and deleted lead sets, the raw objects
//! a test injects, its structure (pipelines, users, fields, tags...), the
//! mutations a test (or the churn hook) applies to them (the edits of links,
//! tags, fields and stages are in `edits`),
//! the server clock (with its offset) those mutations stamp, changes that
//! stay invisible for a while (replication lag), and the live
//! filter/sort/offset query the list endpoint answers from. Everything here
//! is synchronous; callers hold the state mutex.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fastrand::Rng;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::events::{self, Event, EventQuery, Move};
use super::generator;
use super::history::{self, StatusChange};
use super::links;
use super::query::{ListQuery, SortField};
use super::structure::Structure;

/// One change applied to the account, in the order applied.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    Updated(i64),
    Deleted(i64),
    Restored(i64),
    Added(i64),
}

impl Mutation {
    /// The lead it changed.
    pub fn id(&self) -> i64 {
        match self {
            Mutation::Updated(id)
            | Mutation::Deleted(id)
            | Mutation::Restored(id)
            | Mutation::Added(id) => *id,
        }
    }
}

/// This machine's wall clock, Unix seconds.
pub(crate) fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Sort keys extracted once per request: (id, created_at, updated_at, lead).
type Row<'a> = (Option<i64>, Option<i64>, Option<i64>, &'a Value);

/// A deleted lead: its full object (restored as is) and the deletion time.
struct Deleted {
    lead: Value,
    deleted_at: i64,
}

/// The object a lead served before a change that is not visible yet.
struct Hidden {
    old: Value,
    visible_at: Instant,
}

pub(crate) struct Account {
    pub(super) alive: BTreeMap<i64, Value>,
    deleted: BTreeMap<i64, Deleted>,
    /// objects added as given without a positive integer id: listed (a
    /// missing or non-integer sort field sorts before every integer when
    /// ascending, after when descending) but not leads
    unkeyed: Vec<Value>,
    /// alive leads whose latest change is not visible yet
    hidden: BTreeMap<i64, Hidden>,
    /// seconds the server clock runs ahead of this machine's
    clock_offset: i64,
    /// the second the server clock stands still at, if it does
    frozen_at: Option<i64>,
    next_id: i64,
    pub(super) rng: Rng,
    /// draws the contacts of new leads (generation uses it first), so the
    /// leads themselves come out of `rng` as before links existed
    aux_rng: Rng,
    pub(super) mutations: Vec<Mutation>,
    events: Vec<Event>,
    pub(super) structure: Structure,
    base_url: String,
}

fn field(v: &Value, name: &str) -> Option<i64> {
    v.get(name).and_then(Value::as_i64)
}

impl Account {
    pub(crate) fn new(leads: usize, tie_block: usize, seed: u64, base_url: String) -> Account {
        let mut rng = Rng::with_seed(seed);
        let now = now_unix();
        let (list, next_id) = generator::generate(&mut rng, leads, tie_block, &base_url, now);
        let mut aux_rng = Rng::with_seed(seed ^ 0x00C0_A7AC_7500_0008);
        let alive: BTreeMap<i64, Value> = list
            .into_iter()
            .filter_map(|mut v| {
                links::set_contacts(&mut v, links::random_contacts(&mut aux_rng));
                field(&v, "id").map(|id| (id, v))
            })
            .collect();
        let structure = Structure::new();
        let past = history::generate(&mut aux_rng, &alive, &structure, now);
        let mut account = Account {
            alive,
            deleted: BTreeMap::new(),
            unkeyed: Vec::new(),
            hidden: BTreeMap::new(),
            clock_offset: 0,
            frozen_at: None,
            next_id,
            rng: Rng::with_seed(seed ^ 0x9E37_79B9_7F4A_7C15),
            mutations: Vec::new(),
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

    /// Every stored lead object a name shown inside leads lives in: alive,
    /// deleted, and the old objects of hidden changes (raw objects without
    /// an id are left as given).
    pub(super) fn stored_leads_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.alive
            .values_mut()
            .chain(self.deleted.values_mut().map(|d| &mut d.lead))
            .chain(self.hidden.values_mut().map(|h| &mut h.old))
    }

    /// Another change of the lead is visible at once: a hidden one ends.
    pub(super) fn unhide(&mut self, id: i64) {
        self.hidden.remove(&id);
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

    /// Changes name, price and a custom field; `updated_at` = server now.
    pub(crate) fn update(&mut self, id: i64) -> bool {
        let now = self.now();
        self.update_stamped(id, now)
    }

    /// Changes name, price and a custom field; `updated_at` = `stamp`. The
    /// change is visible at once (a hidden earlier change shows too).
    pub(crate) fn update_stamped(&mut self, id: i64, stamp: i64) -> bool {
        let now = self.now();
        let rng = &mut self.rng;
        let Some(Value::Object(lead)) = self.alive.get_mut(&id) else {
            return false;
        };
        let old_name = lead.get("name").cloned();
        let mut name = generator::random_name(rng, id);
        if name.is_null()
            || name == Value::String(String::new())
            || Some(&name) == old_name.as_ref()
        {
            name = json!(match rng.u8(0..3) {
                0 => format!("Обновлённая сделка {}", rng.u32(..100_000)),
                1 => format!("✨ Updated deal {}", rng.u32(..100_000)),
                _ => format!("Updated \"deal\" {}", rng.u32(..100_000)),
            });
        }
        lead.insert("name".into(), name);
        let old_price = lead.get("price").and_then(Value::as_i64);
        generator::set_price(rng, lead, old_price);
        generator::change_custom_field(rng, lead, now);
        lead.insert("updated_by".into(), json!(9_000_001 + rng.i64(0..8)));
        lead.insert("updated_at".into(), json!(stamp));
        self.hidden.remove(&id);
        self.mutations.push(Mutation::Updated(id));
        true
    }

    /// Updates every alive lead of `ids` (each once, however often listed)
    /// with one `updated_at` (server now); returns how many were alive.
    pub(crate) fn bulk_update(&mut self, ids: &[i64]) -> usize {
        let stamp = self.now();
        let mut seen = std::collections::BTreeSet::new();
        ids.iter()
            .filter(|id| seen.insert(**id))
            .filter(|id| self.update_stamped(**id, stamp))
            .count()
    }

    /// Gives the `n` alive leads in the middle of the history (by
    /// `updated_at`) one `updated_at`: the newest of theirs, as a bulk edit
    /// then would have. Returns that second, `None` with no lead.
    pub(crate) fn crowd_one_second(&mut self, n: usize) -> Option<i64> {
        let mut by_update: Vec<(i64, i64)> = self
            .alive
            .iter()
            .filter_map(|(id, v)| Some((field(v, "updated_at")?, *id)))
            .collect();
        by_update.sort_unstable();
        let n = n.min(by_update.len());
        let first = (by_update.len() - n) / 2;
        let picked = &by_update[first..first + n];
        let stamp = picked.last()?.0;
        for (_, id) in picked {
            self.update_stamped(*id, stamp);
        }
        Some(stamp)
    }

    /// Up to `count` distinct alive ids picked at random, ascending.
    pub(crate) fn random_alive(&mut self, count: usize) -> Vec<i64> {
        let mut ids: Vec<i64> = self.alive.keys().copied().collect();
        self.rng.shuffle(&mut ids);
        ids.truncate(count);
        ids.sort_unstable();
        ids
    }

    /// Updates the lead (stamped with the server's now) but keeps serving
    /// the object it showed until `delay` has passed.
    pub(crate) fn update_visible_after(&mut self, id: i64, delay: Duration) -> bool {
        let now = Instant::now();
        let Some(shown) = self
            .alive
            .get(&id)
            .map(|v| self.visible(id, v, now).clone())
        else {
            return false;
        };
        self.hidden.retain(|_, h| h.visible_at > now);
        if !self.update(id) {
            return false;
        }
        let visible_at = now
            .checked_add(delay)
            .or_else(|| now.checked_add(Duration::from_secs(10 * 365 * 86_400)))
            .unwrap_or(now);
        self.hidden.insert(
            id,
            Hidden {
                old: shown,
                visible_at,
            },
        );
        true
    }

    /// What the API serves for the alive lead `id` whose current object is
    /// `lead`: the old object while a change is hidden.
    fn visible<'a>(&'a self, id: i64, lead: &'a Value, now: Instant) -> &'a Value {
        self.hidden
            .get(&id)
            .filter(|h| h.visible_at > now)
            .map_or(lead, |h| &h.old)
    }

    /// Lists `value` as given. With a positive integer `id` it becomes the
    /// alive lead of that id (replacing one alive or deleted); otherwise it
    /// is listed but is no lead a client could store.
    pub(crate) fn add_raw(&mut self, value: Value) {
        match value.get("id").and_then(Value::as_i64).filter(|id| *id > 0) {
            Some(id) => {
                self.deleted.remove(&id);
                self.hidden.remove(&id);
                self.alive.insert(id, value);
                self.next_id = self.next_id.max(id.saturating_add(1));
                self.mutations.push(Mutation::Added(id));
            }
            None => self.unkeyed.push(value),
        }
    }

    pub(crate) fn delete(&mut self, id: i64) -> bool {
        let Some(lead) = self.alive.remove(&id) else {
            return false;
        };
        self.hidden.remove(&id);
        let deleted_at = self.now();
        self.deleted.insert(id, Deleted { lead, deleted_at });
        self.mutations.push(Mutation::Deleted(id));
        self.log_event("lead_deleted", id, deleted_at);
        true
    }

    /// Back to alive with the object it had; `updated_at` is not bumped.
    pub(crate) fn restore(&mut self, id: i64) -> bool {
        let Some(d) = self.deleted.remove(&id) else {
            return false;
        };
        self.alive.insert(id, d.lead);
        self.mutations.push(Mutation::Restored(id));
        self.log_event("lead_restored", id, self.now());
        true
    }

    pub(crate) fn add(&mut self) -> i64 {
        let now = self.now();
        let id = self.next_id;
        self.next_id += 1 + if self.rng.u8(0..10) == 0 {
            self.rng.i64(1..20)
        } else {
            0
        };
        let mut lead = generator::lead(&mut self.rng, id, &self.base_url, now, now, now);
        links::set_contacts(&mut lead, links::random_contacts(&mut self.aux_rng));
        self.alive.insert(id, lead);
        self.mutations.push(Mutation::Added(id));
        id
    }

    /// `n` random mutations: ~60% update (one in five of them a stage
    /// move), ~20% delete, ~15% add, ~5% restore.
    pub(crate) fn churn(&mut self, n: usize) {
        for _ in 0..n {
            let roll = self.rng.u8(0..100);
            let pick_alive = |rng: &mut Rng, m: &BTreeMap<i64, Value>| {
                (!m.is_empty())
                    .then(|| m.keys().nth(rng.usize(..m.len())).copied())
                    .flatten()
            };
            match roll {
                0..=59 | 95..=99 => {
                    if roll >= 95 && !self.deleted.is_empty() {
                        let i = self.rng.usize(..self.deleted.len());
                        if let Some(id) = self.deleted.keys().nth(i).copied() {
                            self.restore(id);
                        }
                    } else if let Some(id) = pick_alive(&mut self.rng, &self.alive) {
                        if self.rng.u8(0..5) != 0 || !self.random_status_change(id) {
                            self.update(id);
                        }
                    } else {
                        self.add();
                    }
                }
                60..=79 => match pick_alive(&mut self.rng, &self.alive) {
                    Some(id) => {
                        self.delete(id);
                    }
                    None => {
                        self.add();
                    }
                },
                _ => {
                    self.add();
                }
            }
        }
    }

    fn log_event(&mut self, kind: &'static str, lead_id: i64, created_at: i64) {
        let id = self.events.len() as u64 + 1;
        self.events.push(Event {
            id,
            kind,
            lead_id,
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
            lead_id,
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
                    lead_id: e.lead_id,
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

    /// The alive leads as the API serves them now (hidden changes not
    /// shown), by id.
    pub(crate) fn alive_leads(&self) -> Vec<Value> {
        let now = Instant::now();
        self.alive
            .iter()
            .map(|(id, v)| self.visible(*id, v, now).clone())
            .collect()
    }

    pub(crate) fn alive_ids(&self) -> Vec<i64> {
        self.alive.keys().copied().collect()
    }

    pub(crate) fn deleted_ids(&self) -> Vec<i64> {
        self.deleted.keys().copied().collect()
    }

    pub(crate) fn mutations(&self) -> Vec<Mutation> {
        self.mutations.clone()
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

    /// The page `q.page` of the filtered and sorted set as it is visible at
    /// `now`, and whether more items exist past it.
    pub(crate) fn page(&self, q: &ListQuery, now: Instant) -> (Vec<Value>, bool) {
        let owned: Vec<Value>;
        let candidates: Vec<&Value> = if q.only_deleted {
            owned = self
                .deleted
                .iter()
                .map(|(id, d)| self.deleted_view(*id, d.deleted_at))
                .collect();
            owned.iter().collect()
        } else {
            self.alive
                .iter()
                .map(|(id, v)| self.visible(*id, v, now))
                .chain(&self.unkeyed)
                .collect()
        };
        let mut rows: Vec<Row<'_>> = candidates
            .into_iter()
            .filter(|v| q.matches(v))
            .map(|v| {
                (
                    field(v, "id"),
                    field(v, "created_at"),
                    field(v, "updated_at"),
                    v,
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            for (f, desc) in &q.order {
                let ord = match f {
                    SortField::Id => a.0.cmp(&b.0),
                    SortField::CreatedAt => a.1.cmp(&b.1),
                    SortField::UpdatedAt => a.2.cmp(&b.2),
                };
                let ord = if *desc { ord.reverse() } else { ord };
                if ord.is_ne() {
                    return ord;
                }
            }
            a.0.cmp(&b.0)
        });
        let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
        let start = usize::try_from(q.page.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .saturating_mul(limit);
        let end = start.saturating_add(limit);
        let page: Vec<Value> = rows
            .iter()
            .skip(start)
            .take(limit)
            .map(|row| {
                if q.with_contacts {
                    row.3.clone()
                } else {
                    links::without_contacts(row.3.clone())
                }
            })
            .collect();
        (page, rows.len() > end)
    }
}
