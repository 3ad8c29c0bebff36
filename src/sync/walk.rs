//! One keyset walk over `updated_at`: page 1 from the cursor, commit, move
//! the cursor to the page's newest `updated_at`, until a page comes back
//! short. A walk covers a whole listing (incremental syncs) or one window of
//! a full pass, whose end a split may move while it walks.

use std::collections::HashSet;
use std::sync::Mutex;

use super::windows::WindowPlan;
use super::{MAX_PASSES_PER_SECOND, RunProgress, SyncError, Syncer};
use crate::clock::unix_now;
use crate::kommo::{KommoError, Lead, LeadPage, LeadQuery};
use crate::store::{CursorUpdate, PageCommit};

/// Which listing a walk reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Listing {
    /// Alive leads.
    Alive,
    /// Deleted, restorable leads (`with=only_deleted`).
    Deleted,
}

/// The full-pass window a walk belongs to.
#[derive(Clone, Copy)]
pub(super) struct WindowRef<'a> {
    pub pass: i64,
    pub id: i64,
    pub plan: &'a Mutex<WindowPlan>,
}

impl WindowRef<'_> {
    fn plan(&self) -> std::sync::MutexGuard<'_, WindowPlan> {
        self.plan.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What a walk covers.
#[derive(Clone, Copy)]
pub(super) struct Range<'a> {
    pub listing: Listing,
    pub start: i64,
    pub window: Option<WindowRef<'a>>,
}

impl Range<'_> {
    /// Every alive lead changed since `start` (moves the incremental cursor).
    pub fn incremental(start: i64) -> Range<'static> {
        Range {
            listing: Listing::Alive,
            start,
            window: None,
        }
    }

    /// Every deleted lead listed since `start` (moves the deleted cursor).
    pub fn deleted(start: i64) -> Range<'static> {
        Range {
            listing: Listing::Deleted,
            start,
            window: None,
        }
    }

    /// The current upper bound (a split may have lowered it).
    fn end(&self) -> Option<i64> {
        self.window.and_then(|w| w.plan().get(w.id).end)
    }
}

/// Whether more leads may follow this page.
fn is_full(page: &LeadPage, limit: u32) -> bool {
    page.has_next || page.leads.len() >= limit as usize
}

impl Syncer {
    /// Walks `range` to its end by keyset on `updated_at`.
    pub(super) async fn walk(
        &self,
        progress: &RunProgress,
        range: Range<'_>,
    ) -> Result<(), SyncError> {
        let limit = self.options.page_size;
        let mut cursor = range.start;
        loop {
            let end = range.end();
            if end.is_some_and(|end| cursor > end) {
                return Ok(());
            }
            let query = LeadQuery {
                updated_from: Some(cursor),
                updated_to: end,
                page: 1,
                limit,
                only_deleted: range.listing == Listing::Deleted,
                order_by_id: false,
                ids: Vec::new(),
            };
            if let Some(w) = range.window {
                w.plan().request_starts(w.id);
            }
            let page = self.fetch(progress, &query).await?;
            if page.leads.is_empty() {
                return Ok(());
            }
            let more = is_full(&page, limit);
            let Some(newest) = page.max_updated_at() else {
                return Err(KommoError::Decode {
                    message: format!(
                        "a page of leads from updated_at {cursor} carries no updated_at; the mirror cannot advance past it"
                    ),
                }
                .into());
            };
            let top = newest.max(cursor);
            if more && top == cursor {
                // A whole page inside the cursor's second: read the second by
                // id, then step past it.
                self.walk_second(progress, cursor, range).await?;
                cursor += 1;
                self.commit(progress, &[], range, cursor).await?;
                continue;
            }
            self.commit(progress, &page.leads, range, top).await?;
            if !more {
                return Ok(());
            }
            cursor = top;
        }
    }

    /// Reads every lead whose `updated_at` is `second`, by id with offset
    /// pages, until two passes in a row bring the same ids. A lead leaving
    /// the second during a pass (it changed, so it is met again later) shifts
    /// the offsets of the others and may hide one from that pass; a pass
    /// during which nothing left reads the second whole, and the next pass
    /// then brings the same ids.
    async fn walk_second(
        &self,
        progress: &RunProgress,
        second: i64,
        range: Range<'_>,
    ) -> Result<(), SyncError> {
        let limit = self.options.page_size;
        let mut previous: Option<HashSet<i64>> = None;
        for pass in 1..=MAX_PASSES_PER_SECOND {
            let mut ids = HashSet::new();
            for page_number in 1.. {
                let query = LeadQuery {
                    updated_from: Some(second),
                    updated_to: Some(second),
                    page: page_number,
                    limit,
                    only_deleted: range.listing == Listing::Deleted,
                    order_by_id: true,
                    ids: Vec::new(),
                };
                // No `request_starts` here: the window's end is only ever
                // decided by the keyset request that follows this second.
                let page = self.fetch(progress, &query).await?;
                ids.extend(page.leads.iter().map(|l| l.id));
                if !page.leads.is_empty() {
                    self.commit(progress, &page.leads, range, second).await?;
                }
                if !is_full(&page, limit) {
                    break;
                }
            }
            tracing::debug!(
                run_id = progress.run_id,
                second,
                pass,
                leads = ids.len(),
                "read one crowded second"
            );
            if previous.as_ref() == Some(&ids) {
                return Ok(());
            }
            previous = Some(ids);
        }
        tracing::warn!(
            run_id = progress.run_id,
            second,
            "leads kept changing inside one second while it was read; the next full sync reads it again"
        );
        if let Some(w) = range.window {
            // A lead of this second the passes missed must not be taken for
            // deleted: this pass marks no deletions.
            self.store.note_full_pass_incomplete(w.pass).await?;
        }
        Ok(())
    }

    /// Commits a page with the cursor it reaches, in one transaction.
    async fn commit(
        &self,
        progress: &RunProgress,
        leads: &[Lead],
        range: Range<'_>,
        reached: i64,
    ) -> Result<(), SyncError> {
        let counters = progress.add_leads(leads.len());
        let cursor = match (range.listing, range.window) {
            (Listing::Alive, None) => CursorUpdate {
                incremental: Some(reached),
                ..CursorUpdate::default()
            },
            (Listing::Deleted, _) => CursorUpdate {
                deleted: Some(reached),
                ..CursorUpdate::default()
            },
            (Listing::Alive, Some(_)) => CursorUpdate::default(),
        };
        let window = range
            .window
            .map(|w| (w.pass, w.plan().advanced(w.id, reached)));
        self.store
            .commit_page(PageCommit {
                run_id: progress.run_id,
                leads,
                gone: &[],
                cursor,
                window,
                counters,
                now: unix_now(),
            })
            .await?;
        if let Some(w) = range.window {
            let oldest = leads.iter().filter_map(|l| l.updated_at).min();
            w.plan().advance(w.id, reached, oldest);
        }
        Ok(())
    }
}
