//! One page of a walk as one unit of change: its leads upserted or marked
//! deleted, their detail rows, the cursors and the run's counters, written
//! together in the batch's transaction.

use std::collections::HashMap;

use sqlx::{Sqlite, Transaction};

use super::{CursorUpdate, RunCounters, StoreError, Window};
use super::{lead_details, leads, runs, state};
use crate::kommo::{Lead, LeadId};

/// What one page changes, committed together.
#[derive(Debug, Default)]
pub struct PageCommit<'a> {
    /// The run this page belongs to.
    pub run_id: i64,
    /// Leads to upsert (or, with `is_deleted`, to mark deleted).
    pub leads: &'a [Lead],
    /// Leads known to be gone: marked deleted when the mirror has them alive.
    pub gone: &'a [LeadId],
    /// Cursors to move.
    pub cursor: CursorUpdate,
    /// The full-pass window this page advances, as it stands after the page.
    pub window: Option<(i64, Window)>,
    /// The run's counters after this page.
    pub counters: RunCounters,
    /// Unix seconds of the write.
    pub now: i64,
}

/// The statements of one page.
pub(super) async fn write(
    tx: &mut Transaction<'static, Sqlite>,
    commit: &PageCommit<'_>,
) -> Result<(), StoreError> {
    // A lead listed twice in one page counts as its last listing.
    let mut last: HashMap<LeadId, &Lead> = HashMap::with_capacity(commit.leads.len());
    for lead in commit.leads {
        last.insert(lead.id, lead);
    }
    let (deleted, mut alive): (Vec<&Lead>, Vec<&Lead>) =
        last.into_values().partition(|lead| lead.is_deleted);
    for lead in deleted {
        leads::mark_deleted_from_listing(tx, lead, commit.now).await?;
    }
    if !alive.is_empty() {
        // In id order: each B-tree is walked forward, not jumped about.
        alive.sort_unstable_by_key(|lead| lead.id);
        leads::upsert_alive(tx, &alive, commit.now).await?;
        lead_details::replace(tx, &alive).await?;
        let ids: Vec<LeadId> = alive.iter().map(|lead| lead.id).collect();
        leads::mark_seen(tx, &ids).await?;
    }
    for id in commit.gone {
        leads::mark_gone(tx, *id, commit.now).await?;
    }
    state::apply(tx, &commit.cursor).await?;
    if let Some((pass, window)) = &commit.window {
        state::save_window(tx, *pass, window).await?;
    }
    runs::set_counters(tx, commit.run_id, &commit.counters).await?;
    Ok(())
}
