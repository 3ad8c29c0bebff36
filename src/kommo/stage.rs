//! Stage changes as the events listing reports them: a
//! `lead_status_changed` event carries the lead's stage before
//! (`value_before[0].lead_status {id, pipeline_id}`) and after
//! (`value_after[0]` likewise), when and by whom.
//!
//! One events request can ask for deletions, restores and stage changes at
//! once; [`LeadEventsPage`] holds what the sync needs of each. A stage
//! change that cannot be read (no event id to deduplicate on, no lead, no
//! time) is skipped with its reason rather than failing the page.

use serde_json::Value;

use super::structure::lenient_i64;
use super::{EventPage, KommoError, RecordId};

/// The event type of a stage change.
pub const STATUS_CHANGED: &str = "lead_status_changed";

/// One stage change of one lead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    /// The event's id (a string at Kommo), unique: the deduplication key.
    pub event_id: String,
    pub lead_id: RecordId,
    pub from_pipeline_id: Option<i64>,
    pub from_status_id: Option<i64>,
    pub to_pipeline_id: Option<i64>,
    pub to_status_id: Option<i64>,
    /// The event's `created_at`, Unix seconds.
    pub changed_at: i64,
    /// The event's `created_by` (0 when an integration or robot did it).
    pub changed_by: Option<i64>,
}

/// One page of `GET /api/v4/events` asked for lead events of several types.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeadEventsPage {
    /// Every lead event of the page (deletions, restores and stage changes
    /// alike), and whether more pages follow.
    pub page: EventPage,
    /// The page's stage changes that could be read.
    pub status_changes: Vec<StatusChange>,
    /// Why each stage change that could not be read was skipped.
    pub skipped: Vec<String>,
}

impl LeadEventsPage {
    /// Parses a 200 body (`None` for a 204: an empty last page).
    pub fn from_json(body: Option<Value>) -> Result<LeadEventsPage, KommoError> {
        let Some(body) = body else {
            return Ok(LeadEventsPage::default());
        };
        let (status_changes, skipped) = status_changes(&body);
        Ok(LeadEventsPage {
            page: EventPage::from_json(body)?,
            status_changes,
            skipped,
        })
    }
}

/// The `lead_status` of `value_before` / `value_after`: (pipeline, status).
fn lead_status(event: &Value, side: &str) -> (Option<i64>, Option<i64>) {
    let status = event
        .get(side)
        .and_then(|v| v.get(0))
        .and_then(|v| v.get("lead_status"));
    let field = |k: &str| status.and_then(|s| s.get(k)).and_then(lenient_i64);
    (field("pipeline_id"), field("id"))
}

/// The stage changes of an events body, and the reasons of those skipped.
fn status_changes(body: &Value) -> (Vec<StatusChange>, Vec<String>) {
    let mut changes = Vec::new();
    let mut skipped = Vec::new();
    let Some(Value::Array(items)) = body.get("_embedded").and_then(|e| e.get("events")) else {
        return (changes, skipped);
    };
    for (index, event) in items.iter().enumerate() {
        if event.get("type").and_then(Value::as_str) != Some(STATUS_CHANGED) {
            continue;
        }
        let event_id = match event.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => {
                skipped.push(format!("events[{index}]: a stage change without an id"));
                continue;
            }
        };
        let lead_id = event
            .get("entity_id")
            .and_then(lenient_i64)
            .filter(|id| *id > 0);
        let changed_at = event.get("created_at").and_then(lenient_i64);
        let (Some(lead_id), Some(changed_at)) = (lead_id, changed_at) else {
            skipped.push(format!(
                "event {event_id}: a stage change without a lead id or created_at"
            ));
            continue;
        };
        let (from_pipeline_id, from_status_id) = lead_status(event, "value_before");
        let (to_pipeline_id, to_status_id) = lead_status(event, "value_after");
        if to_status_id.is_none() {
            skipped.push(format!(
                "event {event_id}: a stage change of lead {lead_id} without value_after[0].lead_status.id"
            ));
            continue;
        }
        changes.push(StatusChange {
            event_id,
            lead_id,
            from_pipeline_id,
            from_status_id,
            to_pipeline_id,
            to_status_id,
            changed_at,
            changed_by: event.get("created_by").and_then(lenient_i64),
        });
    }
    (changes, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_stage_changes_next_to_deletions() {
        let page = LeadEventsPage::from_json(Some(json!({
            "_links": {"next": {"href": "n"}},
            "_embedded": {"events": [
                {"id": "01abc", "type": "lead_status_changed", "entity_id": 5, "entity_type": "lead",
                 "created_by": 77, "created_at": 1_000,
                 "value_before": [{"lead_status": {"id": 10, "pipeline_id": 1}}],
                 "value_after": [{"lead_status": {"id": 142, "pipeline_id": 1}}]},
                {"id": "01abd", "type": "lead_deleted", "entity_id": 6, "entity_type": "lead",
                 "created_at": 1_001, "value_before": [], "value_after": []},
                {"type": "lead_status_changed", "entity_id": 7, "entity_type": "lead", "created_at": 1_002},
                {"id": "01abf", "type": "lead_status_changed", "entity_id": 8, "entity_type": "lead",
                 "created_at": 1_003, "value_before": [], "value_after": []}
            ]}
        })))
        .unwrap();
        assert!(page.page.has_next);
        assert_eq!(page.page.events.len(), 4);
        assert_eq!(
            page.status_changes,
            vec![StatusChange {
                event_id: "01abc".into(),
                lead_id: 5,
                from_pipeline_id: Some(1),
                from_status_id: Some(10),
                to_pipeline_id: Some(1),
                to_status_id: Some(142),
                changed_at: 1_000,
                changed_by: Some(77),
            }]
        );
        assert_eq!(page.skipped.len(), 2, "{:?}", page.skipped);
        assert_eq!(
            LeadEventsPage::from_json(None).unwrap(),
            LeadEventsPage::default()
        );
    }
}
