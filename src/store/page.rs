//! One page of a walk as one unit of change: its records upserted or marked
//! deleted, their detail rows, the cursors and the run's counters, written
//! together in the batch's transaction.

use std::collections::HashMap;

use sqlx::{Any, Transaction};

use super::{CursorUpdate, RunCounters, StoreError, Window};
use super::{record_details, records, runs, state};
use crate::kommo::{Entity, LEADS, Record, RecordId};

/// What one page changes, committed together.
#[derive(Debug)]
pub struct PageCommit<'a> {
    /// The run this page belongs to.
    pub run_id: i64,
    /// The kind of `records` and `gone`.
    pub entity: &'static Entity,
    /// Records to upsert (or, with `is_deleted`, to mark deleted).
    pub records: &'a [Record],
    /// Records known to be gone: marked deleted when the mirror has them alive.
    pub gone: &'a [RecordId],
    /// Cursors to move.
    pub cursor: CursorUpdate,
    /// The full-pass window this page advances, as it stands after the page.
    pub window: Option<(i64, Window)>,
    /// The run's counters after this page.
    pub counters: RunCounters,
    /// Unix seconds of the write.
    pub now: i64,
}

impl Default for PageCommit<'_> {
    /// A commit of nothing but what its fields set; its entity (leads)
    /// matters only with records or ids.
    fn default() -> Self {
        PageCommit {
            run_id: 0,
            entity: &LEADS,
            records: &[],
            gone: &[],
            cursor: CursorUpdate::default(),
            window: None,
            counters: RunCounters::default(),
            now: 0,
        }
    }
}

/// The statements of one page.
pub(super) async fn write(
    tx: &mut Transaction<'static, Any>,
    commit: &PageCommit<'_>,
) -> Result<(), StoreError> {
    // A lead listed twice in one page counts as its last listing.
    let mut last: HashMap<RecordId, &Record> = HashMap::with_capacity(commit.records.len());
    for lead in commit.records {
        last.insert(lead.id, lead);
    }
    let (deleted, mut alive): (Vec<&Record>, Vec<&Record>) =
        last.into_values().partition(|lead| lead.is_deleted);
    for lead in deleted {
        records::mark_deleted_from_listing(tx, commit.entity, lead, commit.now).await?;
    }
    if !alive.is_empty() {
        // In id order: each B-tree is walked forward, not jumped about.
        alive.sort_unstable_by_key(|lead| lead.id);
        records::upsert_alive(tx, commit.entity, &alive, commit.now).await?;
        record_details::replace(tx, commit.entity, &alive).await?;
        let ids: Vec<RecordId> = alive.iter().map(|lead| lead.id).collect();
        records::mark_seen(tx, commit.entity, &ids).await?;
    }
    for id in commit.gone {
        records::mark_gone(tx, commit.entity, *id, commit.now).await?;
    }
    state::apply(tx, commit.entity, &commit.cursor).await?;
    if let Some((pass, window)) = &commit.window {
        state::save_window(tx, *pass, commit.entity, window).await?;
    }
    runs::set_counters(tx, commit.run_id, &commit.counters).await?;
    Ok(())
}
