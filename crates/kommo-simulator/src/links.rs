//! A lead's links to contacts: `_embedded.contacts` (`[{id, is_main}]`, 0 to
//! 3 per lead, exactly one main when there is any). They are part of the
//! stored lead, generated from the seed, and served only when the request
//! asks `with=contacts`, as on the real service.

use fastrand::Rng;
use serde_json::{Value, json};

/// Contact ids start here.
const FIRST_CONTACT_ID: i64 = 30_000_000;

/// 0 to 3 distinct contacts, the first one main.
pub(crate) fn random_contacts(rng: &mut Rng) -> Value {
    let n = match rng.u8(0..10) {
        0..=2 => 0,
        3..=6 => 1,
        7..=8 => 2,
        _ => 3,
    };
    let mut ids: Vec<i64> = Vec::with_capacity(n);
    while ids.len() < n {
        let id = FIRST_CONTACT_ID + rng.i64(0..200_000);
        if !ids.contains(&id) {
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

/// Sets `lead._embedded.contacts` (creating `_embedded` when missing).
pub(crate) fn set_contacts(lead: &mut Value, contacts: Value) {
    let Some(obj) = lead.as_object_mut() else {
        return;
    };
    let embedded = obj.entry("_embedded").or_insert_with(|| json!({}));
    if let Some(e) = embedded.as_object_mut() {
        e.insert("contacts".into(), contacts);
    }
}

/// The lead as a listing without `with=contacts` serves it.
pub(crate) fn without_contacts(mut lead: Value) -> Value {
    if let Some(e) = lead.get_mut("_embedded").and_then(Value::as_object_mut) {
        e.shift_remove("contacts");
    }
    lead
}
