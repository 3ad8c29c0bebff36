//! The shapes Kommo sends: a page of records (`_embedded.leads`,
//! `_embedded.contacts`..., `_links.next`) and a page of events.
//!
//! A page is read straight from the response bytes: each record is cut out
//! as its JSON text and read once ([`Record::from_raw`]). Only `id` must be
//! usable: an element without a positive integer id is skipped (and
//! reported), never a reason to reject its page. A `200` whose
//! `_embedded.{entity}` is missing or empty is not a page at all: the end of a
//! listing is a `204` or a short page, so such an answer is a (transient)
//! decode error.

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use super::KommoError;
use super::record::json_kind;
use std::borrow::Cow;
use std::collections::HashMap;

pub use super::entity::Entity;
pub use super::record::{Column, FieldValue, Record, RecordError, RecordId};

/// An element of `_embedded.leads` that cannot be stored, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedRecord {
    /// Its position in the page.
    pub index: usize,
    /// What is wrong with it, e.g. `id is the string "abc"`.
    pub reason: String,
}

/// One page of `GET /api/v4/leads`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RecordPage {
    /// The leads that can be stored, in the order received.
    pub records: Vec<Record>,
    /// The elements that cannot (no usable id).
    pub skipped: Vec<SkippedRecord>,
    /// `_links.next` was present.
    pub has_next: bool,
    /// From sending the request to its answer read and parsed (the try that
    /// succeeded; time waiting for the pacer not counted).
    pub round_trip: std::time::Duration,
}

/// The top of a leads answer; everything else is skipped unread.
#[derive(Deserialize)]
struct WirePage<'a> {
    #[serde(default, borrow, rename = "_links")]
    links: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "_embedded")]
    embedded: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireLinks<'a> {
    #[serde(default, borrow)]
    next: Option<&'a RawValue>,
}

impl RecordPage {
    /// Parses a 200 body. A body without `_embedded.leads`, or with an empty
    /// list, is an error: only a `204` or a short page ends a listing.
    pub fn from_slice(entity: &Entity, body: &[u8]) -> Result<RecordPage, KommoError> {
        let key = entity.plural;
        let decode = |message: String| KommoError::Decode { message };
        let text = std::str::from_utf8(body)
            .map_err(|e| decode(format!("the {key} response is not UTF-8 ({e})")))?;
        if json_kind(text) != "an object" {
            return Err(decode(format!("the {key} response is not a JSON object")));
        }
        let top: WirePage<'_> = serde_json::from_str(text)
            .map_err(|e| decode(format!("the {key} response is not valid JSON ({e})")))?;
        let has_next = match top.links {
            Some(links) if json_kind(links.get()) == "an object" => {
                serde_json::from_str::<WireLinks<'_>>(links.get())
                    .ok()
                    .and_then(|l| l.next)
                    .is_some_and(|next| json_kind(next.get()) != "null")
            }
            _ => false,
        };
        let embedded = match top.embedded {
            None => return Err(no_records(key, "is missing: _embedded")),
            Some(raw) => match json_kind(raw.get()) {
                "null" => return Err(no_records(key, "is missing: _embedded")),
                "an object" => raw,
                other => return Err(decode(format!("_embedded is {other}, not an object"))),
            },
        };
        let listed = serde_json::from_str::<HashMap<Cow<'_, str>, &RawValue>>(embedded.get())
            .map_err(|e| decode(format!("_embedded cannot be read ({e})")))?
            .remove(key);
        let items: Vec<&RawValue> = match listed {
            None => return Err(no_records(key, "is missing")),
            Some(raw) => match json_kind(raw.get()) {
                "null" => return Err(no_records(key, "is missing")),
                "an array" => serde_json::from_str(raw.get())
                    .map_err(|e| decode(format!("_embedded.{key} cannot be read ({e})")))?,
                other => {
                    return Err(decode(format!("_embedded.{key} is {other}, not an array")));
                }
            },
        };
        if items.is_empty() {
            return Err(no_records(key, "is empty"));
        }
        let mut page = RecordPage {
            records: Vec::with_capacity(items.len()),
            skipped: Vec::new(),
            has_next,
            round_trip: std::time::Duration::ZERO,
        };
        for (index, item) in items.into_iter().enumerate() {
            match Record::from_raw(entity, item) {
                Ok(lead) => page.records.push(lead),
                Err(RecordError::Unusable(reason)) => {
                    page.skipped.push(SkippedRecord { index, reason })
                }
                Err(RecordError::Unreadable(reason)) => {
                    return Err(decode(format!("_embedded.{key}[{index}]: {reason}")));
                }
            }
        }
        Ok(page)
    }

    /// Like [`RecordPage::from_slice`], from a parsed value.
    #[cfg(test)]
    pub fn from_json(entity: &Entity, body: Value) -> Result<RecordPage, KommoError> {
        RecordPage::from_slice(entity, body.to_string().as_bytes())
    }

    /// Elements received, stored or skipped.
    pub fn received(&self) -> usize {
        self.records.len() + self.skipped.len()
    }

    /// Whether the answer was `204 No Content`.
    pub fn is_empty(&self) -> bool {
        self.received() == 0
    }
}

/// A `200` that holds no record: not an answer a listing can end on.
fn no_records(key: &str, what: &str) -> KommoError {
    KommoError::Decode {
        message: format!(
            "HTTP 200 without {key} (_embedded.{key} {what}); a listing ends only with 204 No Content or a short page"
        ),
    }
}

/// One entry of `GET /api/v4/events` about a record (a lead, a contact,
/// a company).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordEvent {
    /// `type`, e.g. `lead_deleted`, `contact_restored`.
    pub kind: String,
    /// The record it concerns (`entity_id`; its entity is told by `kind`).
    pub entity_id: RecordId,
    /// `created_at`, Unix seconds.
    pub created_at: i64,
}

/// One page of `GET /api/v4/events`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventPage {
    /// The events of the page about leads, contacts and companies; events
    /// about other entities are skipped.
    pub events: Vec<RecordEvent>,
    /// Events received, read or not: what tells a full page from a short one.
    pub received: usize,
    /// The `id` of every event received, in order (empty where it has
    /// none): what tells two answers apart.
    pub ids: Vec<String>,
    /// Why each event that could not be read was skipped.
    pub skipped: Vec<String>,
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
            // Only a 204 says there are none; a 200 without them is a fault.
            None | Some(Value::Null) => {
                return Err(KommoError::Decode {
                    message: "HTTP 200 without _embedded.events; a listing of events ends only with 204 No Content or a short page".into(),
                });
            }
            Some(Value::Array(items)) if items.is_empty() => {
                return Err(KommoError::Decode {
                    message: "HTTP 200 with an empty _embedded.events; a listing of events ends only with 204 No Content or a short page".into(),
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
        let mut skipped = Vec::new();
        let ids = items
            .iter()
            .map(|item| match item.get("id") {
                Some(Value::String(id)) => id.clone(),
                Some(Value::Number(id)) => id.to_string(),
                _ => String::new(),
            })
            .collect();
        for (i, item) in items.iter().enumerate() {
            if item
                .get("entity_type")
                .and_then(Value::as_str)
                .is_some_and(|t| !matches!(t, "lead" | "contact" | "company"))
            {
                continue;
            }
            let field = |k: &str| item.get(k).and_then(Value::as_i64);
            let (Some(entity_id), Some(created_at), Some(kind)) = (
                field("entity_id"),
                field("created_at"),
                item.get("type").and_then(Value::as_str),
            ) else {
                // One odd event must not stop every later sync at this page:
                // skipping a deletion leaves the lead alive (the next full
                // sync asks for it by id), skipping a restore is caught by
                // the same by-id request.
                skipped.push(format!(
                    "events[{i}] lacks a type, an integer entity_id or created_at"
                ));
                continue;
            };
            events.push(RecordEvent {
                kind: kind.to_string(),
                entity_id,
                created_at,
            });
        }
        Ok(EventPage {
            events,
            received: items.len(),
            ids,
            skipped,
            has_next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kommo::entity::LEADS;
    use serde_json::json;

    #[test]
    fn parses_a_page_with_unknown_fields() {
        let page = RecordPage::from_json(
            &LEADS,
            json!({
                "_page": 1,
                "_links": {"self": {"href": "x"}, "next": {"href": "y"}},
                "_embedded": {"leads": [
                    {"id": 5, "updated_at": 10, "price_with_minor_units": 1.5, "new": {"a": 1}},
                    {"id": 6, "updated_at": null, "is_deleted": true}
                ]}
            }),
        )
        .unwrap();
        assert!(page.has_next);
        assert_eq!(page.records.len(), 2);
        assert_eq!(page.records[0].to_value()["new"], json!({"a": 1}));
        assert!(page.records[1].is_deleted);
        assert_eq!(page.records[0].updated_at, Some(10));
    }

    #[test]
    fn a_key_given_twice_keeps_the_lead_and_an_unreadable_one_fails_the_page() {
        let body = br#"{"_embedded":{"leads":[{"id":5,"price":1,"price":2,"updated_at":9}]}}"#;
        let page = RecordPage::from_slice(&LEADS, body).unwrap();
        assert!(page.skipped.is_empty());
        assert_eq!(page.records[0].id, 5);
        assert_eq!(
            page.records[0].columns[1],
            Column::Integer(2),
            "the last one counts"
        );
        let body = br#"{"_embedded":{"leads":[{"id":6},{"id":7,"price":1e400}]}}"#;
        let e = RecordPage::from_slice(&LEADS, body).unwrap_err();
        assert!(e.is_transient(), "{e}");
    }

    #[test]
    fn an_event_that_cannot_be_read_is_skipped_not_a_failed_page() {
        let page = EventPage::from_json(json!({"_embedded": {"events": [
            {"type": "lead_status_changed", "entity_id": "7", "entity_type": "lead"},
            {"type": "lead_deleted", "entity_id": 8, "created_at": 100, "entity_type": "lead"}
        ]}}))
        .unwrap();
        assert_eq!(page.received, 2);
        assert_eq!(page.skipped.len(), 1);
        assert_eq!(page.events.len(), 1);
        assert_eq!(page.events[0].entity_id, 8);
    }

    #[test]
    fn a_200_without_leads_is_an_error_not_an_end() {
        for body in [
            json!({}),
            json!({"_page": 1}),
            json!({"_embedded": {}}),
            json!({"_embedded": {"leads": []}, "_links": {"next": {"href": "y"}}}),
            json!({"_embedded": {"leads": {}}}),
            json!([1]),
        ] {
            let e = RecordPage::from_json(&LEADS, body.clone()).unwrap_err();
            assert!(e.is_transient(), "{body}: {e}");
        }
    }

    #[test]
    fn leads_without_a_usable_id_are_skipped_with_the_reason() {
        let page = RecordPage::from_json(
            &LEADS,
            json!({"_embedded": {"leads": [
                {"name": "no id"},
                {"id": "abc"},
                {"id": -3},
                7,
                {"id": 8, "price": "12"}
            ]}}),
        )
        .unwrap();
        assert_eq!(page.records.len(), 1);
        assert_eq!(page.records[0].id, 8);
        let reasons: Vec<&str> = page.skipped.iter().map(|s| s.reason.as_str()).collect();
        assert_eq!(
            reasons,
            vec![
                "it has no id",
                "its id is not a positive integer but \"abc\"",
                "its id is not a positive integer but -3",
                "it is not an object but a number",
            ]
        );
        assert_eq!(page.received(), 5);
    }
}
