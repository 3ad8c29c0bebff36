//! Lead events (`GET /api/v4/events`): how an incremental sync learns of
//! restores, which need not change a lead's `updated_at`, of deletions the
//! deleted-leads listing no longer shows, and of stage changes (the stage
//! history, which no other endpoint gives).
//!
//! One walk asks for all three types at once, from the older of the two
//! cursors (minus the overlap) to Kommo's now. Deletions and restores count
//! only from their own cursor, exactly as when they were asked for alone;
//! stage changes are recorded once per event id, however often the overlap
//! reads them again. The first walk of the stage history (no cursor yet)
//! starts at 0: as far back as the API returns. A full sync follows the
//! stage history alone, alongside its pass.

use std::collections::HashMap;

use super::listing::{Paging, Said};
use super::{ById, EVENTS_PER_PAGE, IDS_PER_REQUEST, RunProgress, SyncError, Syncer};
use crate::clock::unix_now;
use crate::kommo::{Entity, EventQuery, KommoError, RecordId, STATUS_CHANGED};
use crate::store::{CursorUpdate, PageCommit};

/// For each record named by a deletion or restore event (by its entity's
/// name and its id): the time of its last such event, whether it was a
/// deletion, and whether its events were all of that one kind.
type LastEvents = HashMap<(&'static str, RecordId), (i64, bool, bool)>;

impl Syncer {
    /// The events phase of an incremental sync: deletions and restores from
    /// `events_cursor`, stage changes from the stage-history cursor.
    pub(super) async fn follow_events(
        &self,
        progress: &RunProgress,
        events_cursor: Option<i64>,
        until: i64,
    ) -> Result<(), SyncError> {
        // No cursor yet (no full sync has run): nothing to catch up on
        // before the first sync; deletions are followed from now on.
        let deletions_from = events_cursor.map(|c| self.options.resume_from(c));
        let stages_from = self.stage_history_start().await?;
        let Some(last_event) = self
            .walk_events(progress, deletions_from, stages_from, until)
            .await?
        else {
            if events_cursor.is_none() {
                return self.commit_events_cursor(progress, until).await;
            }
            return Ok(());
        };
        // A lead whose events were all deletions (or all restores) and
        // that the mirror already holds deleted (or alive) has nothing to
        // ask: a restore changes nothing else of it, and a change after
        // `until` is the next sync's. A lead deleted and restored is asked
        // for: events of one second need not come in the order they
        // happened.
        for entity in self.options.entities.iter() {
            let last = |id: &RecordId| last_event[&(entity.plural, *id)];
            let mut ids: Vec<RecordId> = last_event
                .keys()
                .filter(|(of, _)| *of == entity.plural)
                .map(|(_, id)| *id)
                .collect();
            let mirrored = self.store.deleted_flags(entity, &ids).await?;
            ids.retain(|id| {
                let (_, deleted, one_kind) = last(id);
                !(one_kind && mirrored.get(id) == Some(&deleted))
            });
            ids.sort_unstable();
            for chunk in ids.chunks(IDS_PER_REQUEST) {
                let ById { alive, gone } = self.read_by_id(progress, entity, chunk).await?;
                // Gone only where the last event was a deletion: a record
                // restored since is not marked deleted because an answer
                // missed it.
                let gone: Vec<RecordId> = gone.into_iter().filter(|id| last(id).1).collect();
                self.commit_by_id(progress, entity, &alive, &gone).await?;
            }
        }
        self.commit_events_cursor(progress, until).await
    }

    /// The stage history, alongside a full pass, up to Kommo's now. It is
    /// not worth failing the pass for: a failure other than a closed account
    /// or a stop is a warning, and the next sync reads the changes from the
    /// same cursor.
    pub(super) async fn follow_stage_history(
        &self,
        progress: &RunProgress,
    ) -> Result<(), SyncError> {
        // Its end is Kommo's now, never ours: with no answer from Kommo yet
        // (every structure listing failed and the pass has none either),
        // the next sync reads it.
        let Some(until) = self.client.server_now() else {
            tracing::warn!(
                run_id = progress.run_id,
                "no answer from Kommo yet to tell its time; the stage history is read by the next sync"
            );
            return Ok(());
        };
        let from = self.stage_history_start().await?;
        match self.walk_events(progress, None, from, until).await {
            Err(SyncError::Kommo(e)) if e.alert().is_none() => {
                tracing::warn!(run_id = progress.run_id, error = %e, "cannot read the stage history now; the next sync reads it from where it stopped");
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }

    /// Where the stage history walk starts: its cursor minus the overlap,
    /// or 0 (the whole history) the first time.
    async fn stage_history_start(&self) -> Result<i64, SyncError> {
        Ok(self
            .store
            .stage_history_cursor()
            .await?
            .map_or(0, |c| self.options.resume_from(c)))
    }

    /// Walks the events up to `until`: stage changes from `stages_from`
    /// (recorded page by page, the cursor moved to `until` once the listing
    /// has ended, as the listing reader believes it) and,
    /// with `deletions_from`, deletions and restores from there. Returns the
    /// last deletion or restore per lead, or `None` when the events cannot
    /// be read (warned; neither cursor moves).
    async fn walk_events(
        &self,
        progress: &RunProgress,
        deletions_from: Option<i64>,
        stages_from: i64,
        until: i64,
    ) -> Result<Option<LastEvents>, SyncError> {
        let mut types = Vec::new();
        if deletions_from.is_some() {
            for entity in self.options.entities.iter() {
                types.extend([entity.deleted_event, entity.restored_event]);
            }
        }
        types.push(STATUS_CHANGED);
        let from = deletions_from.map_or(stages_from, |d| d.min(stages_from));
        let mut last_event = LastEvents::new();
        for page_number in 1.. {
            let query = EventQuery {
                types: types.clone(),
                created_from: from,
                created_to: until,
                page: page_number,
                limit: EVENTS_PER_PAGE,
            };
            let said = self
                .settle(
                    progress,
                    "the lead events",
                    Paging::ByNumber,
                    EVENTS_PER_PAGE as usize,
                    || async {
                        let answer = self
                            .stoppable(progress, self.client.fetch_events(&progress.token, &query))
                            .await??;
                        Ok(answer)
                    },
                )
                .await;
            let (answer, ended) = match said {
                Ok(Said::More(answer)) => (answer, false),
                Ok(Said::End(answer)) => (answer, true),
                // A token without rights to events, or an endpoint refused:
                // the rest of the sync still holds.
                Err(SyncError::Kommo(
                    e @ (KommoError::Forbidden { .. }
                    | KommoError::BadRequest { .. }
                    | KommoError::UnexpectedStatus { .. }),
                )) => {
                    tracing::warn!(run_id = progress.run_id, error = %e, "cannot read lead events; restores are picked up by the next full sync, stage changes by the next sync that can read events");
                    return Ok(None);
                }
                // 401, a blocked or unpaid account, throttling past its
                // budget, network trouble, answers that never settle: the
                // run stops here, and neither cursor moves.
                Err(e) => return Err(e),
            };
            if let Some(deletions_from) = deletions_from {
                for event in &answer.page.events {
                    let Some((entity, deleted)) = Entity::of_event(&event.kind) else {
                        continue;
                    };
                    if !self.options.entities.contains(entity) || event.created_at < deletions_from
                    {
                        continue;
                    }
                    let key = (entity.plural, event.entity_id);
                    let entry = last_event
                        .entry(key)
                        .or_insert((event.created_at, deleted, true));
                    let one_kind = entry.2 && entry.1 == deleted;
                    if event.created_at >= entry.0 {
                        *entry = (event.created_at, deleted, one_kind);
                    } else {
                        entry.2 = one_kind;
                    }
                }
            }
            for reason in &answer.page.skipped {
                tracing::warn!(
                    run_id = progress.run_id,
                    "Kommo sent an event that cannot be read ({reason}); skipped"
                );
            }
            for reason in &answer.skipped {
                tracing::warn!(
                    run_id = progress.run_id,
                    "Kommo sent a stage change that cannot be stored ({reason}); skipped"
                );
            }
            if !answer.status_changes.is_empty() {
                self.store
                    .commit_status_changes(
                        progress.run_id,
                        &answer.status_changes,
                        None,
                        &progress.counters(),
                    )
                    .await?;
            }
            if ended {
                break;
            }
        }
        self.store
            .commit_status_changes(progress.run_id, &[], Some(until), &progress.counters())
            .await?;
        Ok(Some(last_event))
    }

    async fn commit_events_cursor(
        &self,
        progress: &RunProgress,
        until: i64,
    ) -> Result<(), SyncError> {
        self.store
            .commit_page(PageCommit {
                run_id: progress.run_id,
                cursor: CursorUpdate {
                    events: Some(until),
                    ..CursorUpdate::default()
                },
                counters: progress.counters(),
                now: unix_now(),
                ..PageCommit::default()
            })
            .await?;
        Ok(())
    }
}
