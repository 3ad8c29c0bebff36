//! The account's event log as `GET /api/v4/events` serves it: one
//! `lead_deleted` or `lead_restored` (`contact_deleted`, `contact_restored`,
//! `company_deleted`, `company_restored`, with `entity_type` `contact` or
//! `company`) event per deletion and restore, one `lead_status_changed` per
//! stage move (generated history included),
//! newest first, filtered by type (`filter[type]=a,b` or repeated
//! `filter[type][]`), entity and `created_at`, paged by offset (at most 100
//! per page: a larger `limit` is not honoured and gives the default 50, as
//! on the real service).

use serde_json::{Value, json};

use super::generator::ACCOUNT_ID;
use super::kind::RecordKind;
use super::query::{Invalid, invalid, number, pairs};

/// Kommo's maximum `limit` for events.
pub(crate) const MAX_EVENTS_PER_PAGE: u64 = 100;
/// The `limit` without one, or with one larger than the maximum.
const DEFAULT_EVENTS_PER_PAGE: u64 = 50;

/// A lead's stage move: `(pipeline_id, status_id)` before and after.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Move {
    pub(crate) from: (i64, i64),
    pub(crate) to: (i64, i64),
}

/// The `id` string of the event numbered `n`.
pub(crate) fn event_id(n: u64) -> String {
    format!("01sim{n:020}")
}

fn lead_status((pipeline_id, status_id): (i64, i64)) -> Value {
    json!([{"lead_status": {"id": status_id, "pipeline_id": pipeline_id}}])
}

/// One entry of the log.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) id: u64,
    /// the event's `type`
    pub(crate) kind: &'static str,
    /// what `entity_id` is: a lead, a contact or a company
    pub(crate) entity: RecordKind,
    pub(crate) entity_id: i64,
    pub(crate) created_at: i64,
    pub(crate) created_by: i64,
    /// the stage move of a `lead_status_changed` event
    pub(crate) status: Option<Move>,
}

impl Event {
    fn to_json(&self, base_url: &str) -> Value {
        let id = event_id(self.id);
        let (before, after) = match self.status {
            Some(m) => (lead_status(m.from), lead_status(m.to)),
            None => (json!([]), json!([])),
        };
        json!({
            "id": id,
            "type": self.kind,
            "entity_id": self.entity_id,
            "entity_type": self.entity.entity_type(),
            "created_by": self.created_by,
            "created_at": self.created_at,
            "value_after": after,
            "value_before": before,
            "account_id": ACCOUNT_ID,
            "_links": {"self": {"href": format!("{base_url}/api/v4/events/{id}")}},
            "_embedded": {},
        })
    }
}

/// A parsed `/api/v4/events` query.
pub(crate) struct EventQuery {
    pub(crate) page: u64,
    pub(crate) limit: u64,
    types: Vec<String>,
    /// `filter[entity]`: the entity types asked for (empty: all)
    entities: Vec<String>,
    created_from: Option<i64>,
    created_to: Option<i64>,
}

impl EventQuery {
    pub(crate) fn parse(raw: Option<&str>) -> Result<EventQuery, Invalid> {
        let mut q = EventQuery {
            page: 1,
            limit: DEFAULT_EVENTS_PER_PAGE,
            types: Vec::new(),
            entities: Vec::new(),
            created_from: None,
            created_to: None,
        };
        for (key, value) in pairs(raw.unwrap_or("")) {
            match key.as_str() {
                "page" => {
                    q.page = u64::try_from(number("page", &value)?)
                        .ok()
                        .filter(|p| *p >= 1)
                        .ok_or_else(|| invalid("page", "This value should be 1 or more."))?;
                }
                "limit" => {
                    let limit = u64::try_from(number("limit", &value)?)
                        .ok()
                        .filter(|l| *l >= 1)
                        .ok_or_else(|| invalid("limit", "This value should be 1 or more."))?;
                    q.limit = if limit > MAX_EVENTS_PER_PAGE {
                        DEFAULT_EVENTS_PER_PAGE
                    } else {
                        limit
                    };
                }
                "filter[created_at][from]" => q.created_from = Some(number(&key, &value)?),
                "filter[created_at][to]" => q.created_to = Some(number(&key, &value)?),
                k if k == "filter[type]" || k.starts_with("filter[type][") => {
                    q.types.extend(list(&value));
                }
                k if k == "filter[entity]" || k.starts_with("filter[entity][") => {
                    q.entities.extend(list(&value));
                }
                _ => {}
            }
        }
        Ok(q)
    }

    fn matches(&self, e: &Event) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == e.kind))
            && (self.entities.is_empty()
                || self.entities.iter().any(|t| t == e.entity.entity_type()))
            && self.created_from.is_none_or(|f| e.created_at >= f)
            && self.created_to.is_none_or(|t| e.created_at <= t)
    }
}

/// The non-empty items of a comma list.
fn list(value: &str) -> impl Iterator<Item = String> + '_ {
    value
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(String::from)
}

/// The page of matching events, newest first, and whether more follow.
pub(crate) fn page(log: &[Event], q: &EventQuery, base_url: &str) -> (Vec<Value>, bool) {
    let matching: Vec<&Event> = log.iter().rev().filter(|e| q.matches(e)).collect();
    let limit = usize::try_from(q.limit).unwrap_or(usize::MAX);
    let start = usize::try_from(q.page - 1)
        .unwrap_or(usize::MAX)
        .saturating_mul(limit);
    let items: Vec<Value> = matching
        .iter()
        .skip(start)
        .take(limit)
        .map(|e| e.to_json(base_url))
        .collect();
    let more = matching.len() > start.saturating_add(limit);
    (items, more)
}
