//! The records of one kind (leads, contacts or companies): the alive and
//! deleted sets, the raw objects a test injects, changes that stay
//! invisible for a while (replication lag), the mutations applied, the rng
//! that drives them, and the live filter/sort/offset query every listing
//! answers from. What a change does to a record's fields is the caller's
//! (`account`); this module only stores, hides and lists.

use std::collections::BTreeMap;
use std::time::Duration;

use fastrand::Rng;
use serde_json::Value;
use tokio::time::Instant;

use super::query::{ListQuery, SortField};

/// One change applied to the records of a kind, in the order applied.
#[derive(Clone, Debug, PartialEq)]
pub enum Mutation {
    Updated(i64),
    Deleted(i64),
    Restored(i64),
    Added(i64),
}

impl Mutation {
    /// The record it changed.
    pub fn id(&self) -> i64 {
        match self {
            Mutation::Updated(id)
            | Mutation::Deleted(id)
            | Mutation::Restored(id)
            | Mutation::Added(id) => *id,
        }
    }
}

/// Sort keys extracted once per request: (id, created_at, updated_at, record).
type Row<'a> = (Option<i64>, Option<i64>, Option<i64>, &'a Value);

pub(crate) fn field(v: &Value, name: &str) -> Option<i64> {
    v.get(name).and_then(Value::as_i64)
}

/// A deleted record: its full object (restored as is) and the deletion time.
pub(crate) struct Deleted {
    pub(crate) record: Value,
    pub(crate) deleted_at: i64,
}

/// The object a record served before a change that is not visible yet.
struct Hidden {
    old: Value,
    visible_at: Instant,
}

/// Every record of one kind.
pub(crate) struct Table {
    pub(crate) alive: BTreeMap<i64, Value>,
    pub(crate) deleted: BTreeMap<i64, Deleted>,
    /// objects added as given without a positive integer id: listed (a
    /// missing or non-integer sort field sorts before every integer when
    /// ascending, after when descending) but no records
    unkeyed: Vec<Value>,
    /// alive records whose latest change is not visible yet
    hidden: BTreeMap<i64, Hidden>,
    /// the id the next record added gets (before its random gap)
    pub(crate) next_id: i64,
    /// drives the changes of this kind's records, so that one kind's churn
    /// does not shift another's
    pub(crate) rng: Rng,
    pub(crate) mutations: Vec<Mutation>,
}

impl Table {
    /// A table of `records` (objects without a positive integer id are
    /// dropped).
    pub(crate) fn new(records: Vec<Value>, next_id: i64, rng: Rng) -> Table {
        let alive = records
            .into_iter()
            .filter_map(|v| field(&v, "id").filter(|id| *id > 0).map(|id| (id, v)))
            .collect();
        Table {
            alive,
            deleted: BTreeMap::new(),
            unkeyed: Vec::new(),
            hidden: BTreeMap::new(),
            next_id,
            rng,
            mutations: Vec::new(),
        }
    }

    /// Every stored object a name shown inside records lives in: alive,
    /// deleted, and the old objects of hidden changes (raw objects without
    /// an id are left as given).
    pub(crate) fn stored_mut(&mut self) -> impl Iterator<Item = &mut Value> {
        self.alive
            .values_mut()
            .chain(self.deleted.values_mut().map(|d| &mut d.record))
            .chain(self.hidden.values_mut().map(|h| &mut h.old))
    }

    /// Another change of the record is visible at once: a hidden one ends.
    pub(crate) fn unhide(&mut self, id: i64) {
        self.hidden.remove(&id);
    }

    /// What the API serves for the alive record `id` whose current object
    /// is `record`: the old object while a change is hidden.
    pub(crate) fn visible<'a>(&'a self, id: i64, record: &'a Value, now: Instant) -> &'a Value {
        self.hidden
            .get(&id)
            .filter(|h| h.visible_at > now)
            .map_or(record, |h| &h.old)
    }

    /// The alive records as the API serves them at `now`, by id.
    pub(crate) fn alive_visible(&self, now: Instant) -> impl Iterator<Item = &Value> {
        self.alive
            .iter()
            .map(move |(id, v)| self.visible(*id, v, now))
    }

    /// The object the record `id` shows now, if it is alive.
    pub(crate) fn shown(&self, id: i64, now: Instant) -> Option<Value> {
        self.alive
            .get(&id)
            .map(|v| self.visible(id, v, now).clone())
    }

    /// Keeps serving `shown` for the record `id` until `delay` from `now`
    /// has passed (the caller has just changed it). Lags that ended are
    /// forgotten.
    pub(crate) fn hide(&mut self, id: i64, shown: Value, now: Instant, delay: Duration) {
        self.hidden.retain(|_, h| h.visible_at > now);
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
    }

    /// Lists `value` as given. With a positive integer `id` it becomes the
    /// alive record of that id (replacing one alive or deleted); otherwise
    /// it is listed but is no record a client could store.
    pub(crate) fn add_raw(&mut self, value: Value) {
        match field(&value, "id").filter(|id| *id > 0) {
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

    /// Inserts a new alive record (an addition).
    pub(crate) fn insert_new(&mut self, id: i64, record: Value) {
        self.alive.insert(id, record);
        self.mutations.push(Mutation::Added(id));
    }

    /// The id a new record gets: the next free one, then a gap of 1 to 19
    /// ids one time in ten.
    pub(crate) fn take_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1 + if self.rng.u8(0..10) == 0 {
            self.rng.i64(1..20)
        } else {
            0
        };
        id
    }

    /// Moves the alive record to the deleted set; false when not alive.
    pub(crate) fn delete(&mut self, id: i64, deleted_at: i64) -> bool {
        let Some(record) = self.alive.remove(&id) else {
            return false;
        };
        self.hidden.remove(&id);
        self.deleted.insert(id, Deleted { record, deleted_at });
        self.mutations.push(Mutation::Deleted(id));
        true
    }

    /// Back to alive with the object it had; false when not deleted.
    pub(crate) fn restore(&mut self, id: i64) -> bool {
        let Some(d) = self.deleted.remove(&id) else {
            return false;
        };
        self.alive.insert(id, d.record);
        self.mutations.push(Mutation::Restored(id));
        true
    }

    /// An alive id drawn with the table's rng; `None` when none is alive.
    pub(crate) fn pick_alive(&mut self) -> Option<i64> {
        if self.alive.is_empty() {
            return None;
        }
        let i = self.rng.usize(..self.alive.len());
        self.alive.keys().nth(i).copied()
    }

    /// A deleted id drawn with the table's rng; `None` when none is.
    pub(crate) fn pick_deleted(&mut self) -> Option<i64> {
        if self.deleted.is_empty() {
            return None;
        }
        let i = self.rng.usize(..self.deleted.len());
        self.deleted.keys().nth(i).copied()
    }

    /// Up to `count` distinct alive ids picked at random, ascending.
    pub(crate) fn random_alive(&mut self, count: usize) -> Vec<i64> {
        let mut ids: Vec<i64> = self.alive.keys().copied().collect();
        self.rng.shuffle(&mut ids);
        ids.truncate(count);
        ids.sort_unstable();
        ids
    }

    /// The `n` alive records in the middle of the history (by
    /// `updated_at`) and the newest `updated_at` of theirs; `None` when no
    /// record has an integer `updated_at`.
    pub(crate) fn middle_of_history(&self, n: usize) -> Option<(Vec<i64>, i64)> {
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
        Some((picked.iter().map(|(_, id)| *id).collect(), stamp))
    }

    pub(crate) fn alive_ids(&self) -> Vec<i64> {
        self.alive.keys().copied().collect()
    }

    pub(crate) fn deleted_ids(&self) -> Vec<i64> {
        self.deleted.keys().copied().collect()
    }

    /// The page `q.page` of the alive records (and raw objects) visible at
    /// `now`, filtered and sorted as `q` asks, and whether more follow.
    pub(crate) fn alive_page(&self, q: &ListQuery, now: Instant) -> (Vec<&Value>, bool) {
        page_of(self.alive_visible(now).chain(&self.unkeyed), q)
    }
}

/// The page `q.page` of `candidates` that pass `q`'s filters, sorted by its
/// order (then by id), and whether more items exist past it: the offset
/// paging every record listing shares, computed when the request arrives.
pub(crate) fn page_of<'a>(
    candidates: impl Iterator<Item = &'a Value>,
    q: &ListQuery,
) -> (Vec<&'a Value>, bool) {
    let mut rows: Vec<Row<'a>> = candidates
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
    let more = rows.len() > end;
    let page = rows
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|r| r.3)
        .collect();
    (page, more)
}
