//! The account's event log as `GET /api/v4/events` serves it: one
//! `lead_deleted` or `lead_restored` event per deletion and restore, newest
//! first, filtered by type and `created_at`, paged by offset (at most 100 per
//! page, as on the real service).

use serde_json::{Value, json};

use super::generator::ACCOUNT_ID;
use super::query::{Invalid, invalid, number, pairs};

/// Kommo's maximum `limit` for events.
pub(crate) const MAX_EVENTS_PER_PAGE: u64 = 100;

/// One entry of the log.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub(crate) id: u64,
    pub(crate) kind: &'static str,
    pub(crate) lead_id: i64,
    pub(crate) created_at: i64,
}

impl Event {
    fn to_json(&self, base_url: &str) -> Value {
        json!({
            "id": format!("01sim{:020}", self.id),
            "type": self.kind,
            "entity_id": self.lead_id,
            "entity_type": "lead",
            "created_by": 9_000_001,
            "created_at": self.created_at,
            "value_after": [],
            "value_before": [],
            "account_id": ACCOUNT_ID,
            "_links": {"self": {"href": format!("{base_url}/api/v4/events/01sim{:020}", self.id)}},
            "_embedded": {},
        })
    }
}

/// A parsed `/api/v4/events` query.
pub(crate) struct EventQuery {
    pub(crate) page: u64,
    pub(crate) limit: u64,
    types: Vec<String>,
    created_from: Option<i64>,
    created_to: Option<i64>,
}

impl EventQuery {
    pub(crate) fn parse(raw: Option<&str>) -> Result<EventQuery, Invalid> {
        let mut q = EventQuery {
            page: 1,
            limit: 50,
            types: Vec::new(),
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
                    q.limit = u64::try_from(number("limit", &value)?)
                        .ok()
                        .filter(|l| (1..=MAX_EVENTS_PER_PAGE).contains(l))
                        .ok_or_else(|| {
                            invalid("limit", "This value should be between 1 and 100.")
                        })?;
                }
                "filter[created_at][from]" => q.created_from = Some(number(&key, &value)?),
                "filter[created_at][to]" => q.created_to = Some(number(&key, &value)?),
                k if k == "filter[type]" || k.starts_with("filter[type][") => q.types.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|t| !t.is_empty())
                        .map(String::from),
                ),
                _ => {}
            }
        }
        Ok(q)
    }

    fn matches(&self, e: &Event) -> bool {
        (self.types.is_empty() || self.types.iter().any(|t| t == e.kind))
            && self.created_from.is_none_or(|f| e.created_at >= f)
            && self.created_to.is_none_or(|t| e.created_at <= t)
    }
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
