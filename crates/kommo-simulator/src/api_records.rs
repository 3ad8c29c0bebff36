//! The kind-generic part of the [`Simulator`] handle: what a test does to
//! the leads, contacts or companies of the account, one method for the
//! three kinds (the lead methods of `lib.rs` call these with
//! [`RecordKind::Lead`]). Contacts and companies behave as leads do, except
//! that there is no `with=only_deleted` listing for them: a deleted contact
//! or company is absent from every listing (by id too) and shows only as
//! its `contact_deleted` / `company_deleted` event. Deleting or restoring
//! one does not edit the leads that link to it.

use std::time::Duration;

use serde_json::Value;

use super::{Mutation, RecordKind, Simulator};

impl Simulator {
    /// The alive records of `kind`, sorted by id, exactly as a listing
    /// without `with` serves them now (for leads: without
    /// `_embedded.contacts`, i.e. [`Simulator::alive_leads_without_contacts`];
    /// for contacts and companies: without `_embedded.leads`). A change
    /// still invisible is not shown; objects without a positive integer id
    /// are not records and not here.
    pub fn alive_records(&self, kind: RecordKind) -> Vec<Value> {
        self.shared.lock().account.alive_records(kind)
    }

    /// Ids of the alive records of `kind`, ascending.
    pub fn alive_ids_of(&self, kind: RecordKind) -> Vec<i64> {
        self.shared.lock().account.table(kind).alive_ids()
    }

    /// Ids of the deleted (restorable) records of `kind`, ascending.
    pub fn deleted_ids_of(&self, kind: RecordKind) -> Vec<i64> {
        self.shared.lock().account.table(kind).deleted_ids()
    }

    /// Changes the record as a user would (a lead's name, price and a
    /// custom field; a contact's or company's name, or one of its phones or
    /// emails); `updated_at` = server now. False when it is not alive.
    pub fn update_record(&self, kind: RecordKind, id: i64) -> bool {
        self.shared.lock().account.update(kind, id)
    }

    /// Moves the record to the deleted set and writes its deletion event
    /// (`lead_deleted`, `contact_deleted`, `company_deleted`) stamped with
    /// the server's now. A deleted lead is listed by `with=only_deleted`
    /// with `updated_at` = that second; a deleted contact or company is
    /// listed nowhere. Leads linking to a deleted contact or company keep
    /// the link. False when it is not alive.
    pub fn delete_record(&self, kind: RecordKind, id: i64) -> bool {
        self.shared.lock().account.delete(kind, id)
    }

    /// Back to alive with the object it had (`updated_at` unchanged, as
    /// for leads) and its restore event written (`lead_restored`,
    /// `contact_restored`, `company_restored`). False when it is not
    /// deleted.
    pub fn restore_record(&self, kind: RecordKind, id: i64) -> bool {
        self.shared.lock().account.restore(kind, id)
    }

    /// A new record of `kind` with a new highest id; `created_at =
    /// updated_at` = server now. A new lead links to alive contacts and
    /// companies, a new contact to an alive company.
    pub fn add_record(&self, kind: RecordKind) -> i64 {
        self.shared.lock().account.add(kind)
    }

    /// Gives the `n` alive records of `kind` in the middle of the history
    /// one `updated_at` second (the newest of theirs: a bulk edit back
    /// then, a crowded second mid-history) and returns it; `None` with no
    /// record.
    pub fn crowd_one_second_of(&self, kind: RecordKind, n: usize) -> Option<i64> {
        self.shared.lock().account.crowd_one_second(kind, n)
    }

    /// Updates every record of `ids` in one bulk edit: all get the same
    /// `updated_at` (server now). Returns how many existed (alive; an id
    /// listed twice is updated and counted once).
    pub fn bulk_update_of(&self, kind: RecordKind, ids: &[i64]) -> usize {
        self.shared.lock().account.bulk_update(kind, ids)
    }

    /// Changes a record like [`Simulator::update_record`] but stamps
    /// `updated_at` = server now + `seconds_ahead` (a record stamped in the
    /// future by a broken integration). False when it is not alive.
    pub fn stamp_ahead(&self, kind: RecordKind, id: i64, seconds_ahead: i64) -> bool {
        let mut st = self.shared.lock();
        let stamp = st.account.now().saturating_add(seconds_ahead);
        st.account.update_stamped(kind, id, stamp)
    }

    /// Updates the record now (stamped with the server's now) but the
    /// change stays invisible to every listing, filter, order and by-id
    /// request (the object shown before is served) for `delay` (replication
    /// lag); then it appears with that stamp, i.e. with an `updated_at`
    /// already in the past. [`Simulator::alive_records`] shows what is
    /// served. Another change or a deletion of the record ends the lag.
    /// False when it is not alive.
    pub fn update_visible_after(&self, kind: RecordKind, id: i64, delay: Duration) -> bool {
        self.shared
            .lock()
            .account
            .update_visible_after(kind, id, delay)
    }

    /// Adds an object to the alive listing of `kind` exactly as given (it
    /// may lack an id, have a string id, an object for
    /// `custom_fields_values`, NUL or 4-byte characters...). It is listed
    /// wherever its fields place it under the filters and the order: a
    /// missing or non-integer field matches no filter on that field and
    /// sorts before every integer ascending (after, descending). An object
    /// with a positive integer `id` becomes the alive record of that id
    /// (replacing any record with it, alive or deleted) and is part of
    /// [`Simulator::alive_records`] exactly as given; any other object is
    /// listed but not part of `alive_records`/`alive_ids_of`.
    pub fn add_raw_record(&self, kind: RecordKind, value: Value) {
        self.shared.lock().account.add_raw(kind, value);
    }

    /// Before answering each request to the listing of `kind` (one whose
    /// query is valid and that gets no fault), apply `n` random mutations
    /// of records of that kind: ~60% edits (one in five of a lead's a stage
    /// move), ~20% deletions, ~15% additions, ~5% restores.
    pub fn set_churn_per_request_of(&self, kind: RecordKind, n: usize) {
        self.shared.lock().control.churn[kind] = n;
    }

    /// Every mutation of a record of `kind` applied since start, in order.
    pub fn mutations_of(&self, kind: RecordKind) -> Vec<Mutation> {
        self.shared.lock().account.table(kind).mutations.clone()
    }
}
