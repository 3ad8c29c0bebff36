//! The shapes Kommo sends: a page of leads (`_embedded.leads`, `_links.next`)
//! and the few lead fields the sync itself needs.
//!
//! A lead is kept as the JSON object it arrived as (unknown fields included),
//! so a new field in the API never breaks parsing; only `id` must be present.

use serde_json::{Map, Value};

use super::KommoError;

/// Kommo's id of a lead.
pub type LeadId = i64;

/// One lead as received.
#[derive(Clone, Debug, PartialEq)]
pub struct Lead {
    /// Kommo's lead id.
    pub id: LeadId,
    /// `updated_at`, Unix seconds, when it is an integer.
    pub updated_at: Option<i64>,
    /// `is_deleted` is `true` (leads listed with `with=only_deleted`).
    pub is_deleted: bool,
    /// The whole object as received.
    pub raw: Map<String, Value>,
}

impl Lead {
    /// Reads a lead out of one element of `_embedded.leads`.
    pub fn from_json(value: Value, index: usize) -> Result<Lead, KommoError> {
        let Value::Object(raw) = value else {
            return Err(KommoError::Decode {
                message: format!("_embedded.leads[{index}] is not an object"),
            });
        };
        let id = raw
            .get("id")
            .and_then(Value::as_i64)
            .filter(|id| *id > 0)
            .ok_or_else(|| KommoError::Decode {
                message: format!("_embedded.leads[{index}] has no positive integer id"),
            })?;
        let updated_at = raw.get("updated_at").and_then(Value::as_i64);
        let is_deleted = raw.get("is_deleted").and_then(Value::as_bool) == Some(true);
        Ok(Lead {
            id,
            updated_at,
            is_deleted,
            raw,
        })
    }
}

/// One page of `GET /api/v4/leads`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeadPage {
    /// The leads, in the order received.
    pub leads: Vec<Lead>,
    /// `_links.next` was present.
    pub has_next: bool,
}

impl LeadPage {
    /// Parses a 200 body. An absent `_embedded` or `leads` reads as an empty page
    /// (some clients saw `200` with nothing in it); a `leads` that is not an
    /// array, or a lead without an id, is a decode error.
    pub fn from_json(body: Value) -> Result<LeadPage, KommoError> {
        let Value::Object(mut top) = body else {
            return Err(KommoError::Decode {
                message: "the leads response is not a JSON object".into(),
            });
        };
        let has_next = top
            .get("_links")
            .and_then(|l| l.get("next"))
            .is_some_and(|n| !n.is_null());
        let leads = match top.remove("_embedded") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(mut embedded)) => match embedded.remove("leads") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(items)) => items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| Lead::from_json(v, i))
                    .collect::<Result<_, _>>()?,
                Some(_) => {
                    return Err(KommoError::Decode {
                        message: "_embedded.leads is not an array".into(),
                    });
                }
            },
            Some(_) => {
                return Err(KommoError::Decode {
                    message: "_embedded is not an object".into(),
                });
            }
        };
        Ok(LeadPage { leads, has_next })
    }

    /// The largest `updated_at` in the page.
    pub fn max_updated_at(&self) -> Option<i64> {
        self.leads.iter().filter_map(|l| l.updated_at).max()
    }
}

/// One entry of `GET /api/v4/events` about a lead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeadEvent {
    /// `type`, e.g. `lead_deleted`, `lead_restored`.
    pub kind: String,
    /// The lead it concerns (`entity_id`).
    pub lead_id: LeadId,
    /// `created_at`, Unix seconds.
    pub created_at: i64,
}

/// One page of `GET /api/v4/events`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventPage {
    /// The lead events of the page; events about other entities are skipped.
    pub events: Vec<LeadEvent>,
    /// `_links.next` was present.
    pub has_next: bool,
}

impl EventPage {
    /// Parses a 200 body of the events list.
    pub fn from_json(body: Value) -> Result<EventPage, KommoError> {
        let has_next = body
            .get("_links")
            .and_then(|l| l.get("next"))
            .is_some_and(|n| !n.is_null());
        let items = match body.get("_embedded").and_then(|e| e.get("events")) {
            None | Some(Value::Null) => {
                return Ok(EventPage {
                    events: Vec::new(),
                    has_next,
                });
            }
            Some(Value::Array(items)) => items,
            Some(_) => {
                return Err(KommoError::Decode {
                    message: "_embedded.events is not an array".into(),
                });
            }
        };
        let mut events = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            if item
                .get("entity_type")
                .and_then(Value::as_str)
                .is_some_and(|t| t != "lead")
            {
                continue;
            }
            let field = |k: &str| item.get(k).and_then(Value::as_i64);
            let (Some(lead_id), Some(created_at), Some(kind)) = (
                field("entity_id"),
                field("created_at"),
                item.get("type").and_then(Value::as_str),
            ) else {
                return Err(KommoError::Decode {
                    message: format!("_embedded.events[{i}] lacks type, entity_id or created_at"),
                });
            };
            events.push(LeadEvent {
                kind: kind.to_string(),
                lead_id,
                created_at,
            });
        }
        Ok(EventPage { events, has_next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_page_with_unknown_fields() {
        let page = LeadPage::from_json(json!({
            "_page": 1,
            "_links": {"self": {"href": "x"}, "next": {"href": "y"}},
            "_embedded": {"leads": [
                {"id": 5, "updated_at": 10, "price_with_minor_units": 1.5, "new": {"a": 1}},
                {"id": 6, "updated_at": null, "is_deleted": true}
            ]}
        }))
        .unwrap();
        assert!(page.has_next);
        assert_eq!(page.leads.len(), 2);
        assert_eq!(page.leads[0].raw["new"], json!({"a": 1}));
        assert!(page.leads[1].is_deleted);
        assert_eq!(page.max_updated_at(), Some(10));
    }

    #[test]
    fn empty_and_broken_pages() {
        assert_eq!(
            LeadPage::from_json(json!({"_page": 1}))
                .unwrap()
                .leads
                .len(),
            0
        );
        assert!(LeadPage::from_json(json!({"_embedded": {"leads": {}}})).is_err());
        assert!(LeadPage::from_json(json!({"_embedded": {"leads": [{"name": "x"}]}})).is_err());
        assert!(LeadPage::from_json(json!([1])).is_err());
    }
}
