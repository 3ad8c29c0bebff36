//! The edits of a lead's stage, tags, contacts and custom fields, and the
//! renames of structure items whose names leads carry. A stage move writes
//! one `lead_status_changed` event stamped with the same server second as
//! the lead's new `updated_at`. Renaming a tag or a custom field changes the
//! name shown inside every lead (and, for a tag, every contact and company)
//! at once without touching its `updated_at` (the real service renders
//! those names when it answers).

use serde_json::{Value, json};

use super::account::Account;
use super::history;
use super::table::Mutation;

impl Account {
    /// A user of the account, at random.
    fn random_user(&mut self) -> i64 {
        let users = self.structure.user_ids();
        users[self.leads.rng.usize(..users.len())]
    }

    /// Moves the alive lead `id` to `status_id` of `pipeline_id` (which must
    /// be one of that pipeline's statuses, 142 and 143 included). False when
    /// the lead is not alive, the status unknown or the lead already in it.
    pub(crate) fn change_status(&mut self, id: i64, pipeline_id: i64, status_id: i64) -> bool {
        if self.structure.status(pipeline_id, status_id).is_none() {
            return false;
        }
        let now = self.now();
        let user = self.random_user();
        let reasons = self.structure.loss_reason_ids();
        // none left when every reason was deleted: `loss_reason_id` null
        let reason = (!reasons.is_empty()).then(|| reasons[self.leads.rng.usize(..reasons.len())]);
        let Some(Value::Object(lead)) = self.leads.alive.get_mut(&id) else {
            return false;
        };
        let Some(moved) = history::apply(lead, (pipeline_id, status_id), now, user, reason) else {
            return false;
        };
        self.leads.unhide(id);
        self.leads.mutations.push(Mutation::Updated(id));
        self.log_status_change(id, now, user, moved);
        true
    }

    /// Moves the lead to another status chosen at random (another pipeline's
    /// one time in four); false when it cannot move (no integer stage).
    pub(crate) fn random_status_change(&mut self, id: i64) -> bool {
        let Some(lead) = self.leads.alive.get(&id) else {
            return false;
        };
        let current = (
            lead.get("pipeline_id").and_then(Value::as_i64),
            lead.get("status_id").and_then(Value::as_i64),
        );
        let pipelines = &self.structure.pipelines;
        let same = pipelines.iter().position(|p| Some(p.id) == current.0);
        let p = match same {
            Some(i) if self.leads.rng.u8(0..4) != 0 => i,
            _ => self.leads.rng.usize(..pipelines.len()),
        };
        let pipeline = &pipelines[p];
        let targets: Vec<i64> = pipeline
            .statuses
            .iter()
            .map(|s| s.id)
            .filter(|s| (Some(pipeline.id), Some(*s)) != current)
            .collect();
        let (pipeline_id, status_id) =
            (pipeline.id, targets[self.leads.rng.usize(..targets.len())]);
        self.change_status(id, pipeline_id, status_id)
    }

    /// Stamps an edit of the alive lead `id`: `updated_at` = server now.
    fn touched(&mut self, id: i64) {
        let now = self.now();
        if let Some(Value::Object(lead)) = self.leads.alive.get_mut(&id) {
            lead.insert("updated_at".into(), json!(now));
        }
        self.leads.unhide(id);
        self.leads.mutations.push(Mutation::Updated(id));
    }

    /// `_embedded.tags` becomes the account's tags `tag_ids` (each once, in
    /// the order given). False when the lead is not alive or a tag unknown.
    pub(crate) fn set_tags(&mut self, id: i64, tag_ids: &[i64]) -> bool {
        let mut tags: Vec<Value> = Vec::new();
        let mut seen = Vec::new();
        for t in tag_ids {
            let Some(tag) = self.structure.tag(*t) else {
                return false;
            };
            if !seen.contains(t) {
                seen.push(*t);
                tags.push(tag.to_json());
            }
        }
        let Some(Value::Object(lead)) = self.leads.alive.get_mut(&id) else {
            return false;
        };
        match lead.get_mut("_embedded").and_then(Value::as_object_mut) {
            Some(e) => {
                e.insert("tags".into(), Value::Array(tags));
            }
            None => {
                lead.insert("_embedded".into(), json!({"tags": tags}));
            }
        }
        self.touched(id);
        true
    }

    /// `_embedded.contacts` becomes `contacts` (`(id, is_main)`, as given).
    /// False when the lead is not alive.
    pub(crate) fn set_contacts(&mut self, id: i64, contacts: &[(i64, bool)]) -> bool {
        let Some(lead) = self.leads.alive.get_mut(&id) else {
            return false;
        };
        let list = contacts
            .iter()
            .map(|(cid, main)| json!({"id": cid, "is_main": main}))
            .collect();
        super::links::set_contacts(lead, Value::Array(list));
        self.touched(id);
        true
    }

    /// The `values` of custom field `field_id` become `values`; a lead
    /// without that field gets it (after its others), and `null` or `[]`
    /// removes it (`custom_fields_values` is null when none is left). False
    /// when the lead is not alive or the field unknown.
    pub(crate) fn set_custom_field(&mut self, id: i64, field_id: i64, values: Value) -> bool {
        let Some(f) = self.structure.field(field_id) else {
            return false;
        };
        let entry = json!({
            "field_id": f.id,
            "field_name": f.name,
            "field_code": f.code,
            "field_type": f.kind,
            "values": values,
        });
        let Some(Value::Object(lead)) = self.leads.alive.get_mut(&id) else {
            return false;
        };
        let mut fields = match lead.get("custom_fields_values") {
            Some(Value::Array(fields)) => fields.clone(),
            _ => Vec::new(),
        };
        let remove = values.is_null() || values.as_array().is_some_and(Vec::is_empty);
        let at = fields
            .iter()
            .position(|e| e.get("field_id").and_then(Value::as_i64) == Some(field_id));
        match (at, remove) {
            (Some(i), true) => {
                fields.remove(i);
            }
            (Some(i), false) => {
                if let Some(e) = fields[i].as_object_mut() {
                    e.insert("values".into(), values);
                }
            }
            (None, false) => fields.push(entry),
            (None, true) => {}
        }
        let fields = if fields.is_empty() {
            Value::Null
        } else {
            Value::Array(fields)
        };
        // an existing key keeps its place
        lead.insert("custom_fields_values".into(), fields);
        self.touched(id);
        true
    }

    /// Renames the tag everywhere it shows. False when unknown.
    pub(crate) fn rename_tag(&mut self, tag_id: i64, name: &str) -> bool {
        if !self.structure.rename_tag(tag_id, name) {
            return false;
        }
        for record in self.stored_records_mut() {
            let tags = record
                .get_mut("_embedded")
                .and_then(|e| e.get_mut("tags"))
                .and_then(Value::as_array_mut);
            for t in tags.into_iter().flatten() {
                if t.get("id").and_then(Value::as_i64) == Some(tag_id) {
                    t["name"] = json!(name);
                }
            }
        }
        true
    }

    /// Renames the custom field everywhere it shows. False when unknown.
    pub(crate) fn rename_field(&mut self, field_id: i64, name: &str) -> bool {
        if !self.structure.rename_field(field_id, name) {
            return false;
        }
        for lead in self.leads.stored_mut() {
            let fields = lead
                .get_mut("custom_fields_values")
                .and_then(Value::as_array_mut);
            for f in fields.into_iter().flatten() {
                if f.get("field_id").and_then(Value::as_i64) == Some(field_id) {
                    f["field_name"] = json!(name);
                }
            }
        }
        true
    }
}
