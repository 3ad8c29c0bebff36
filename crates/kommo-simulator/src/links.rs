//! The links between leads and the account's contacts and companies. A
//! lead's `_embedded.contacts` (`[{id, is_main}]`, 0 to 3 per lead, exactly
//! one main when there is any) is part of the stored lead, drawn from the
//! seed among the contacts alive when the lead is made, and served only
//! when the request asks `with=contacts`, as on the real service. The other
//! way round, `with=leads` on contacts and companies shows
//! `_embedded.leads` (`[{id}]`): the alive leads that link to the record,
//! computed when the request arrives. Deleting a contact or a company does
//! not edit the leads that link to it (whether Kommo unlinks them is
//! unconfirmed): their links keep naming it.

use std::collections::BTreeMap;

use fastrand::Rng;
use serde_json::{Value, json};

use super::generator::pick;
use super::kind::RecordKind;

/// Contact ids start here.
pub(crate) const FIRST_CONTACT_ID: i64 = 30_000_000;
/// Company ids start here.
pub(crate) const FIRST_COMPANY_ID: i64 = 40_000_000;

/// 0 to 3 distinct contacts of `contacts` (alive ids, ascending), the
/// first one main; fewer when the account has fewer contacts.
pub(crate) fn random_contacts(rng: &mut Rng, contacts: &[i64]) -> Value {
    let n = match rng.u8(0..10) {
        0..=2 => 0,
        3..=6 => 1,
        7..=8 => 2,
        _ => 3,
    };
    let n = n.min(contacts.len());
    let mut ids: Vec<i64> = Vec::with_capacity(n);
    while ids.len() < n {
        // the draw a random id used to take, mapped onto an existing contact
        if let Some(id) = pick(contacts, rng.i64(0..200_000))
            && !ids.contains(&id)
        {
            ids.push(id);
        }
    }
    Value::Array(
        ids.into_iter()
            .enumerate()
            .map(|(i, id)| json!({"id": id, "is_main": i == 0}))
            .collect(),
    )
}

/// Sets `record._embedded.<key>` (creating `_embedded` when missing).
pub(crate) fn set_embedded(record: &mut Value, key: &str, list: Value) {
    let Some(obj) = record.as_object_mut() else {
        return;
    };
    let embedded = obj.entry("_embedded").or_insert_with(|| json!({}));
    if let Some(e) = embedded.as_object_mut() {
        e.insert(key.into(), list);
    }
}

/// Sets `lead._embedded.contacts` (creating `_embedded` when missing).
pub(crate) fn set_contacts(lead: &mut Value, contacts: Value) {
    set_embedded(lead, "contacts", contacts);
}

/// The lead as a listing without `with=contacts` serves it.
pub(crate) fn without_contacts(mut lead: Value) -> Value {
    if let Some(e) = lead.get_mut("_embedded").and_then(Value::as_object_mut) {
        e.shift_remove("contacts");
    }
    lead
}

/// The ids in `lead._embedded.<key>[].id`.
fn linked_ids<'a>(lead: &'a Value, key: &str) -> impl Iterator<Item = i64> + 'a {
    lead.get("_embedded")
        .and_then(|e| e.get(key))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|l| l.get("id").and_then(Value::as_i64))
}

/// For each contact (`kind` Contact) or company (Company), the ids of the
/// `leads` that link to it, ascending, each once.
pub(crate) fn leads_by_record<'a>(
    kind: RecordKind,
    leads: impl Iterator<Item = &'a Value>,
) -> BTreeMap<i64, Vec<i64>> {
    let key = kind.list_key();
    let mut out: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for lead in leads {
        let Some(lead_id) = lead.get("id").and_then(Value::as_i64) else {
            continue;
        };
        for record in linked_ids(lead, key) {
            let list = out.entry(record).or_default();
            if !list.contains(&lead_id) {
                list.push(lead_id);
            }
        }
    }
    for list in out.values_mut() {
        list.sort_unstable();
    }
    out
}

/// `record` as `with=leads` serves it: `_embedded.leads` = `[{id}]` of the
/// leads in `index` for its id (`[]` for none).
pub(crate) fn with_leads(mut record: Value, index: &BTreeMap<i64, Vec<i64>>) -> Value {
    let ids = record
        .get("id")
        .and_then(Value::as_i64)
        .and_then(|id| index.get(&id))
        .map_or(&[][..], Vec::as_slice);
    let list = ids.iter().map(|id| json!({"id": id})).collect();
    set_embedded(&mut record, "leads", Value::Array(list));
    record
}
