//! The part of the [`Simulator`] handle that edits and reads the account's
//! structure: renames (a renamed item keeps its id), additions and
//! deletions of users' names, statuses, pipelines, tags, custom fields and
//! loss reasons, the time zone, and the structure as its endpoints serve
//! it.

use super::{Simulator, StructureIds};

impl Simulator {
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
}
