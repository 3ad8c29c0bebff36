//! Lead events (`GET /api/v4/events`): how an incremental sync learns of
//! restores, which need not change a lead's `updated_at`, and of deletions
//! the deleted-leads listing no longer shows.

use std::collections::HashMap;

use super::{EVENTS_PER_PAGE, IDS_PER_REQUEST, RunProgress, SyncError, Syncer};
use crate::clock::unix_now;
use crate::kommo::{EventQuery, KommoError, LeadId};
use crate::store::{CursorUpdate, PageCommit};

impl Syncer {
    pub(super) async fn follow_events(
        &self,
        progress: &RunProgress,
        events_cursor: Option<i64>,
        until: i64,
    ) -> Result<(), SyncError> {
        let Some(cursor) = events_cursor else {
            // Nothing to catch up on before the first sync: start following now.
            return self.commit_events_cursor(progress, until).await;
        };
        let from = (cursor - i64::from(self.options.overlap_seconds)).max(0);
        let mut last_event: HashMap<LeadId, (i64, bool)> = HashMap::new();
        for page_number in 1.. {
            let query = EventQuery {
                types: vec!["lead_deleted", "lead_restored"],
                created_from: from,
                created_to: until,
                page: page_number,
                limit: EVENTS_PER_PAGE,
            };
            let result = self
                .stoppable(progress, self.client.fetch_events(&progress.token, &query))
                .await?;
            let page = match result {
                Ok(page) => page,
                // A token without rights to events, or an endpoint refused:
                // the rest of the sync still holds.
                Err(
                    e @ (KommoError::Forbidden { .. }
                    | KommoError::BadRequest { .. }
                    | KommoError::UnexpectedStatus { .. }),
                ) => {
                    tracing::warn!(run_id = progress.run_id, error = %e, "cannot read lead events; restores are picked up by the next full sync");
                    return Ok(());
                }
                // 401, a blocked or unpaid account, throttling past its
                // budget, network trouble: the run stops here.
                Err(e) => return Err(e.into()),
            };
            for event in &page.events {
                let deleted = event.kind == "lead_deleted";
                let entry = last_event
                    .entry(event.lead_id)
                    .or_insert((event.created_at, deleted));
                if event.created_at >= entry.0 {
                    *entry = (event.created_at, deleted);
                }
            }
            if !page.has_next && page.events.len() < EVENTS_PER_PAGE as usize {
                break;
            }
        }
        let mut ids: Vec<LeadId> = last_event.keys().copied().collect();
        ids.sort_unstable();
        for chunk in ids.chunks(IDS_PER_REQUEST) {
            let alive = self.fetch_alive_by_id(progress, chunk).await?;
            let gone: Vec<LeadId> = chunk
                .iter()
                .filter(|id| last_event[id].1 && !alive.iter().any(|l| l.id == **id))
                .copied()
                .collect();
            let counters = progress.add_leads(alive.len());
            self.store
                .commit_page(PageCommit {
                    run_id: progress.run_id,
                    leads: &alive,
                    gone: &gone,
                    cursor: CursorUpdate::default(),
                    window: None,
                    counters,
                    now: unix_now(),
                })
                .await?;
        }
        self.commit_events_cursor(progress, until).await
    }

    async fn commit_events_cursor(
        &self,
        progress: &RunProgress,
        until: i64,
    ) -> Result<(), SyncError> {
        self.store
            .commit_page(PageCommit {
                run_id: progress.run_id,
                leads: &[],
                gone: &[],
                cursor: CursorUpdate {
                    events: Some(until),
                    ..CursorUpdate::default()
                },
                window: None,
                counters: progress.counters(),
                now: unix_now(),
            })
            .await?;
        Ok(())
    }
}
