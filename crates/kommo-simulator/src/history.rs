//! Stage history: the `lead_status_changed` events the account starts with
//! (for leads created in the last [`HISTORY_DAYS`] days and no longer in
//! their pipeline's first status: 1 to 3 moves chaining from that first
//! status to the lead's current one, stamped between its `created_at` and
//! its `updated_at`, the move into 142/143 at its `closed_at`), the move a
//! status change applies to a lead, and [`StatusChange`], the form tests
//! read the history in.

use std::collections::BTreeMap;

use fastrand::Rng;
use serde_json::{Map, Value, json};

use super::events::Move;
use super::generator::DAY;
use super::structure::{LOST, Structure, WON};

/// Only leads created this many days before start get a generated history
/// (it keeps the log small on large accounts).
pub(crate) const HISTORY_DAYS: i64 = 120;

/// One `lead_status_changed` event, as [`super::Simulator::status_events`]
/// lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusChange {
    /// the event's `id`
    pub event_id: String,
    /// `entity_id`
    pub lead_id: i64,
    /// `value_before[0].lead_status.pipeline_id`
    pub from_pipeline: i64,
    /// `value_before[0].lead_status.id`
    pub from_status: i64,
    /// `value_after[0].lead_status.pipeline_id`
    pub to_pipeline: i64,
    /// `value_after[0].lead_status.id`
    pub to_status: i64,
    /// Unix seconds
    pub created_at: i64,
    pub created_by: i64,
}

/// A move of the generated history: lead, when, by whom, what.
pub(crate) struct PastMove {
    pub(crate) lead_id: i64,
    pub(crate) created_at: i64,
    pub(crate) created_by: i64,
    pub(crate) status: Move,
}

fn int(lead: &Value, key: &str) -> Option<i64> {
    lead.get(key).and_then(Value::as_i64)
}

/// The generated history of `leads`, oldest first (a lead's moves in chain
/// order).
pub(crate) fn generate(
    rng: &mut Rng,
    leads: &BTreeMap<i64, Value>,
    structure: &Structure,
    now: i64,
) -> Vec<PastMove> {
    let users = structure.user_ids();
    let mut out = Vec::new();
    for (id, lead) in leads {
        let (Some(created), Some(updated), Some(pipeline_id), Some(status_id)) = (
            int(lead, "created_at"),
            int(lead, "updated_at"),
            int(lead, "pipeline_id"),
            int(lead, "status_id"),
        ) else {
            continue;
        };
        // a lead never changed since creation was created in its status
        if created < now - HISTORY_DAYS * DAY || updated <= created {
            continue;
        }
        let Some(pipeline) = structure.pipeline(pipeline_id) else {
            continue;
        };
        let ids: Vec<i64> = pipeline.statuses.iter().map(|s| s.id).collect();
        let first = ids[0];
        if status_id == first {
            continue;
        }
        let mut middle: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|s| ![first, status_id, WON, LOST].contains(s))
            .collect();
        let moves = rng.usize(1..=3).min(middle.len() + 1);
        rng.shuffle(&mut middle);
        middle.truncate(moves - 1);
        middle.sort_by_key(|s| ids.iter().position(|x| x == s));
        let mut chain = vec![first];
        chain.extend(middle);
        chain.push(status_id);

        let last = int(lead, "closed_at")
            .filter(|c| (created..=updated).contains(c))
            .unwrap_or_else(|| rng.i64(created + 1..=updated));
        let mut times: Vec<i64> = (1..moves).map(|_| rng.i64(created..=last)).collect();
        times.sort_unstable();
        times.push(last);
        for (pair, at) in chain.windows(2).zip(times) {
            out.push(PastMove {
                lead_id: *id,
                created_at: at,
                created_by: users[rng.usize(..users.len())],
                status: Move {
                    from: (pipeline_id, pair[0]),
                    to: (pipeline_id, pair[1]),
                },
            });
        }
    }
    out.sort_by_key(|m| (m.created_at, m.lead_id));
    out
}

/// Moves `lead` to `to` = (pipeline, status) at `now` by `user`:
/// `closed_at` = `now` for 142/143 (else null), `loss_reason_id` =
/// `loss_reason` for 143 (else null, as when the account has none). Returns the move, or `None` when the
/// lead has no integer pipeline and status or is already there.
pub(crate) fn apply(
    lead: &mut Map<String, Value>,
    to: (i64, i64),
    now: i64,
    user: i64,
    loss_reason: Option<i64>,
) -> Option<Move> {
    let from = (
        lead.get("pipeline_id").and_then(Value::as_i64)?,
        lead.get("status_id").and_then(Value::as_i64)?,
    );
    if from == to {
        return None;
    }
    let closed = to.1 == WON || to.1 == LOST;
    lead.insert("status_id".into(), json!(to.1));
    lead.insert("pipeline_id".into(), json!(to.0));
    lead.insert(
        "loss_reason_id".into(),
        json!(loss_reason.filter(|_| to.1 == LOST)),
    );
    lead.insert("updated_by".into(), json!(user));
    lead.insert("updated_at".into(), json!(now));
    lead.insert("closed_at".into(), json!(closed.then_some(now)));
    Some(Move { from, to })
}
